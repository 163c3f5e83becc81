"""Random draws of one `generate` call: one generator per sample, or one shared by the batch.

Per sample (`DecodeConfig.rng == "sample"`, the default) every row draws from its own generator, seeded
from (`DecodeConfig.seed`, the row's sample id) by `sample_seed`: a sample decodes to the same tokens in any
batch, with any neighbours, and a rerun of one sample reproduces it. The generators live for the whole
call, so draws continue across blocks.

Per batch (`"batch"`) one generator seeded with `DecodeConfig.seed` serves every row, and every draw covers
the rows it is asked for in one call: the draw order of transformers' DiffusionGemma `generate` (one global
stream, whole-batch tensors), and of this workbench's temperature sampling before per-sample draws existed.

Hooks reach this through `state.rng`; the core uses it for temperature sampling and for the noise of
uniform-state canvases. Each method takes `rows`, the block rows (indices into the state's batch) that
draw: on a per-sample stream a row that does not draw leaves its generator untouched; on the batch stream
the draw covers exactly those rows, in order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch


def sample_seed(seed: int, sample_id: int) -> int:
    """The seed of a sample's generator: a 63-bit hash of (seed, sample id), so nearby ids are independent."""
    digest = hashlib.sha256(f"workbench-rng:{seed}:{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class RowRandom:
    """The generators of one `generate` call; `bind(sample_ids)` gives the view a block's state holds."""

    def __init__(self, mode: str, seed: int, device: torch.device | str):
        if mode not in ("sample", "batch"):
            raise ValueError(f"rng mode must be 'sample' or 'batch', got {mode!r}")
        self.mode, self.seed, self.device = mode, seed, torch.device(device)
        self._shared = torch.Generator(device=self.device).manual_seed(seed) if mode == "batch" else None
        self._own: dict[int, torch.Generator] = {}

    def generator_of(self, sample_id: int) -> torch.Generator:
        """The generator sample `sample_id` draws from (the shared one in batch mode)."""
        if self._shared is not None:
            return self._shared
        gen = self._own.get(sample_id)
        if gen is None:
            gen = self._own[sample_id] = torch.Generator(device=self.device).manual_seed(
                sample_seed(self.seed, sample_id))
        return gen

    def bind(self, sample_ids: torch.Tensor) -> BlockRandom:
        return BlockRandom(self, [int(i) for i in sample_ids.tolist()])


class BlockRandom:
    """`state.rng`: draws for the rows of one block (block row i is sample `sample_ids[i]`).

    Public draws return full-block tensors (B, L). Which rows draw (`rows=None`): on the batch stream every
    row of the block, done rows included (DiffusionGemma's `generate` draws whole-batch tensors every step);
    on per-sample streams the rows still running (`running`, which the loop keeps current), so a finished
    row's generator is left alone. Rows that do not draw get `low` / 0 in the result.
    """

    def __init__(self, source: RowRandom, sample_ids: Sequence[int]):
        self.source, self.sample_ids = source, list(sample_ids)
        self.running: torch.Tensor | None = None  # (B,) bool, set by the loop each step

    @property
    def mode(self) -> str:
        return self.source.mode

    def generator(self, row: int) -> torch.Generator:
        """Block row `row`'s generator (shared by every row in batch mode)."""
        return self.source.generator_of(self.sample_ids[row])

    def drawing_rows(self) -> list[int]:
        """The block rows that draw when a method is called with `rows=None` (see the class docstring)."""
        if self.source._shared is not None or self.running is None:
            return list(range(len(self.sample_ids)))
        return self.running.nonzero().flatten().tolist()

    def _rows(self, rows) -> list[int]:
        if rows is None:
            return self.drawing_rows()
        if isinstance(rows, torch.Tensor):
            rows = (rows.nonzero().flatten() if rows.dtype == torch.bool else rows).tolist()
        return [int(r) for r in rows]

    def _scatter(self, drawn: torch.Tensor, rows: list[int], fill) -> torch.Tensor:
        """(B, ...) with `drawn` (n, ...) at `rows` and `fill` elsewhere (no copy when every row drew)."""
        b = len(self.sample_ids)
        if len(rows) == b:
            return drawn
        out = torch.full((b, *drawn.shape[1:]), fill, dtype=drawn.dtype, device=drawn.device)
        if rows:
            out[torch.tensor(rows, device=drawn.device)] = drawn
        return out

    def draw_randint(self, low: int, high: int, length: int, rows: list[int]) -> torch.Tensor:
        """(len(rows), length) long: one (n, length) draw on the batch stream, one (1, length) per row else."""
        device = self.source.device
        if self.source._shared is not None:
            return torch.randint(low, high, (len(rows), length), generator=self.source._shared, device=device)
        if not rows:
            return torch.empty(0, length, dtype=torch.long, device=device)
        return torch.cat([torch.randint(low, high, (1, length), generator=self.generator(r), device=device)
                          for r in rows])

    def draw_multinomial(self, probs: torch.Tensor, rows: list[int]) -> torch.Tensor:
        """(n, L) long, one token per position of `probs` (n, L, V) (the rows `rows`, in order). The batch
        stream draws all n*L positions in one call, as DiffusionGemma's `generate` does."""
        n, length, vocab = probs.shape
        if len(rows) != n:
            raise ValueError(f"multinomial: probs hold {n} rows, rows names {len(rows)}")
        if self.source._shared is not None:
            return torch.multinomial(probs.reshape(-1, vocab), 1, generator=self.source._shared).view(n, length)
        if not rows:
            return torch.empty(0, length, dtype=torch.long, device=probs.device)
        return torch.cat([torch.multinomial(probs[i], 1, generator=self.generator(r)).view(1, length)
                          for i, r in enumerate(rows)])

    def randint(self, low: int, high: int, length: int, rows=None) -> torch.Tensor:
        """(B, length) long, uniform in [low, high) on the drawing rows (`low` elsewhere). `rows`: block row
        indices or a (B,) bool mask; None = the default drawing rows."""
        rows = self._rows(rows)
        return self._scatter(self.draw_randint(low, high, length, rows), rows, low)

    def multinomial(self, probs: torch.Tensor, rows=None) -> torch.Tensor:
        """(B, L) long, one token per position drawn from `probs` (B, L, V) on the drawing rows (0 elsewhere)."""
        rows = self._rows(rows)
        picked = probs if len(rows) == probs.shape[0] else probs[torch.tensor(rows, device=probs.device)]
        return self._scatter(self.draw_multinomial(picked, rows), rows, 0)

    def rand(self, length: int, rows=None) -> torch.Tensor:
        """(B, length) float32 uniform in [0, 1) on the drawing rows (0 elsewhere)."""
        rows = self._rows(rows)
        device = self.source.device
        if self.source._shared is not None:
            drawn = torch.rand((len(rows), length), generator=self.source._shared, device=device)
        elif rows:
            drawn = torch.cat([torch.rand((1, length), generator=self.generator(r), device=device) for r in rows])
        else:
            drawn = torch.empty(0, length, device=device)
        return self._scatter(drawn, rows, 0.0)
