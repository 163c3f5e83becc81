"""Forward runners: the whole canvas every step, or a key/value cache (exact or approximate).

`generate` talks to the model only through a runner (`CanvasRunner` and its subclasses), so strategies
never know whether a cache is used. Per generation the loop calls `reset()`, then per block
`start_block(...)` once, `forward(...)` once per step, and `end_block(keep)` once.

Modes (`DecodeConfig.cache`, `make_runner`):
- `none`: `CanvasRunner`, recompute the whole context every step.
- `prefix` on a block-causal model: `BlockCausalCache`, EXACT. A query of block k sees only blocks <= k,
  so the keys/values of the prompt and of committed blocks never change once their hard ids are fixed.
  The first forward of a block is [not-yet-cached committed positions ; block]: for block 1 that is the
  prompt (the prefill rides on the first forward, which NFE counts), for block k > 1 the previous block's
  committed hard ids (DMax). Their keys/values stay in the cache; soft inputs of the current block never
  do (they are rewritten every step and the next block's first forward overwrites them with hard ids).
  Every later step forwards only the block. Tokens AND NFE equal the uncached run's.
- `prefix` on a bidirectional model: `FastDllmCache`, Fast-dLLM's approximate prefix cache. At each block
  start one full forward of the canvas (it is also the block's first step) refreshes the cache; later
  steps forward [block ; suffix of masks] against the cached prefix (Fast-dLLM `generate_with_prefix_cache`
  forwards `x[:, start:]`, so the suffix is recomputed, not cached).
- `dual` on a bidirectional model: Fast-dLLM's dual cache: the same refresh, then later steps forward only
  the block; the future mask positions' keys/values come from the block-start forward. On a block-causal
  model `dual` is the exact prefix cache (the future is invisible there).
- `auto`: the exact cache where it is exact (block-causal models with a cache API), `none` otherwise.
  A model without `denoise_kv` (the transformers adapters, scripted test models) runs `none` for `auto`, and
  refuses `prefix` / `dual` (`CacheUnavailable`): a requested cache is done or refused, never dropped silently.
  `workbench run` keys a run on the mode actually used (`resolve_mode`), not on the one asked for.

What a plugin may ask a forward for beyond the block's logits (see `workbench.decoding.hookspecs`):
- the shadow block (WINO, `needs_shadow`), returned after the block's logits in the same tensor: `forward(..., shadow=True)` appends L inputs, the mask embedding at the block's
  position ids, to the same forward; canvas queries never see them, shadow query j sees what block position
  j sees except position j itself, and the whole shadow. So one forward also predicts every block position
  with that position hidden. The model needs `denoise_masked` (explicit position ids and attention mask; the
  native model has it); `CanvasRunner` and `BlockCausalCache` append it (the cache writes the shadow's
  keys/values in the slots after the block, which the next block's first forward overwrites), Fast-dLLM's
  approximate caches refuse it (`supports_shadow`).
- the canvas view (`canvas_view`): `CanvasRunner` on a bidirectional model computes every generated position
  anyway; with `canvas_from` set it keeps their logits (`canvas_logits`) and takes the inputs of the positions
  after the block from the plugin (`forward(..., after=...)`). Cached runners compute only the block: no view.

Batches. Prompts are LEFT-padded to the longest one (padding invalid: never attended to, skipped by
position ids). Left padding puts every row's block k at the same canvas columns, so a block is one slice
for the whole batch and the cache is one rectangular (N, H, T, hd) buffer per layer that SDPA reads
directly; position ids that skip padding make a padded row compute exactly what it computes alone. The
price is max(P) - P_i dead key slots per row, which attention masks out (right padding would misalign
the blocks of rows; packed variable-length rows need varlen kernels that CPU SDPA does not have).
Rows leave the active set in two ways: inside a block a finished row is simply not forwarded (the
runner gathers the running rows' cache once per change of the running set, without a host sync), and
after a block the rows that produced EOS are dropped for good: `end_block` index-selects the cache of the
remaining rows (compaction), so later blocks cost nothing for finished rows.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from workbench.models.base import Denoiser
from workbench.models.masks import decode_attention_mask, position_ids_from_valid
from workbench.decoding.choices import CACHE_MODES


@runtime_checkable
class CachedDenoiser(Denoiser, Protocol):
    """A `Denoiser` that can forward a slice of the canvas against a `KVCache` (the native model)."""

    def denoise_kv(self, inputs_embeds: torch.Tensor, *, position_ids: torch.Tensor, attn_mask: torch.Tensor,
                   cache: KVCache, start: int, stop: int, logits: slice = slice(None)) -> torch.Tensor:
        """Writes the keys/values of canvas positions [start, start + L) into `cache` and attends to its
        [0, stop). inputs_embeds (N, L, D), position_ids (N, L), attn_mask (N, 1, L, stop) bool. Returns the
        logits of `inputs_embeds[:, logits]`."""


class KVCache:
    """Per-layer key/value buffers over the whole canvas: (N, H, capacity, hd) each, allocated by the model.

    Buffers start as zeros (not `empty`): a masked key still multiplies its value by a zero weight, and
    uninitialised memory may hold NaN.
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.layers: list[tuple[torch.Tensor, torch.Tensor]] = []

    def buffers(self, layer: int, rows: int, heads: int, head_dim: int, dtype: torch.dtype,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if layer == len(self.layers):
            shape = (rows, heads, self.capacity, head_dim)
            self.layers.append((torch.zeros(shape, dtype=dtype, device=device),
                                torch.zeros(shape, dtype=dtype, device=device)))
        return self.layers[layer]

    @property
    def rows(self) -> int | None:
        return self.layers[0][0].shape[0] if self.layers else None

    def select(self, index: torch.Tensor, upto: int | None = None) -> KVCache:
        """The rows `index` (long, on the cache's device) and canvas positions [0, upto)."""
        upto = self.capacity if upto is None else upto
        out = KVCache(upto)
        out.layers = [(k[index, :, :upto], v[index, :, :upto]) for k, v in self.layers]
        return out


def with_shadow(rows: torch.Tensor, block_rows: torch.Tensor, lo: int) -> torch.Tensor:
    """The attention mask of a forward with WINO's shadow block appended, (n, 1, Q + L, K + L) bool.

    rows: (n, 1, Q, K) the forward's own mask (query rows over its K keys); block_rows: (n, 1, L, K) the rows
    of the block's positions [lo, lo + L) (keys index canvas positions). Canvas queries never see the shadow;
    shadow query j sees what block position j sees except position j itself, and the whole shadow."""
    n, _, q, k = rows.shape
    length = block_rows.shape[2]
    hidden = torch.zeros(length, k, dtype=torch.bool, device=rows.device)
    hidden[:, lo:lo + length] = torch.eye(length, dtype=torch.bool, device=rows.device)  # itself, in the canvas
    top = torch.cat([rows, rows.new_zeros(n, 1, q, length)], dim=-1)  # (n, 1, Q, K + L)
    bottom = torch.cat([block_rows & ~hidden, block_rows.new_ones(n, 1, length, length)], dim=-1)
    return torch.cat([top, bottom], dim=2)


class ShadowUnavailable(ValueError):
    """A plugin asked for the shadow block (`needs_shadow`) where this decode cannot append it."""


def check_shadow(runner: CanvasRunner, plugins: str) -> None:
    """Refuse, naming the plugins, a shadow block this runner or model cannot append."""
    model, asks = runner.model, f"plugin {plugins} needs the shadow block (needs_shadow)"
    if not getattr(runner, "supports_shadow", False):
        raise ShadowUnavailable(
            f"{asks}, which the {getattr(runner, 'mode', '?')} runner of {type(model).__name__} cannot append "
            f"(Fast-dLLM's approximate caches and models with their own runner); decode with --cache none or auto")
    if runner.uniform or model.mask_id is None:
        raise ShadowUnavailable(f"{asks}, which feeds mask inputs; this decode is uniform-state (no mask "
                                f"embedding); decode with --noise mask")
    if not callable(getattr(model, "denoise_masked", None)):
        raise ShadowUnavailable(f"{asks}: a forward with an explicit attention mask, which {type(model).__name__} "
                                f"does not offer (`denoise_masked`; the native model has it)")


class CanvasRunner:
    """Forward of the current block with its whole context, recomputed every step (no cache).

    `start_block` receives the context of the rows decoding the block and returns the context forwards it
    spent on them outside `forward` (0 for every runner here: the prompt's keys/values are computed inside
    the first counted forward); they count in `RowResult.nfe_total`, not in `nfe`. `forward` returns the
    block's logits. `separate_prefill`: the runner encodes the prompt in a forward of its own (counted by
    `start_block`); False here, so `nfe_total` adds one forward for the prefill that rides in block 1.
    """

    mode = "none"
    separate_prefill = False
    supports_shadow = True
    # Rows may leave the running set at any forward, the first included (a fully pre-filled block).
    partial_first_forward = True

    def __init__(self, model: Denoiser, *, uniform: bool = False):
        self.model = model
        # Uniform-state canvas: positions after the block hold noise tokens (the loop draws them), not masks.
        self.uniform = uniform
        # The canvas view (`canvas_view` plugins): set by the loop to the first generated canvas position,
        # the forward then keeps `self.canvas_logits` (n, G, V), the logits of every generated position.
        self.canvas_from: int | None = None
        self.canvas_logits: torch.Tensor | None = None

    @property
    def whole_canvas(self) -> bool:
        """Whether every forward computes every generated position, so the canvas view can be given: on a
        bidirectional model (a block-causal one is forwarded only up to the current block)."""
        return not self.model.block_causal

    def future(self, ids: torch.Tensor, hi: int, end: int) -> torch.Tensor:
        """(b, end - hi, D) inputs of the not-yet-decoded positions [hi, end) a bidirectional model sees."""
        table = self.model.embedding_table()
        if self.uniform:
            return table[ids[:, hi:end]]
        return self.model.mask_embedding().expand(ids.shape[0], end - hi, table.shape[1])

    def reset(self) -> None:
        """A new generation starts: forget everything cached."""

    def start_block(self, ids: torch.Tensor, valid: torch.Tensor, block_ids: torch.Tensor,
                    lo: int, hi: int) -> int:
        """ids, valid, block_ids: (b, T) canvas of the block's rows; the block is positions [lo, hi)."""
        model, table = self.model, self.model.embedding_table()
        end = hi if model.block_causal else ids.shape[1]  # bidirectional: future blocks as masks
        self.lo, self.hi = lo, hi
        self.prefix = table[ids[:, :lo]]  # (b, lo, D) prompt and committed blocks, hard ids
        self.suffix = self.future(ids, hi, end)  # (b, T-hi, D)
        self.block_ids, self.valid = block_ids[:, :end], valid[:, :end]
        return 0

    def forward(self, block_embeds: torch.Tensor, running: torch.Tensor, *, shadow: bool = False,
                after: torch.Tensor | None = None) -> torch.Tensor:
        """block_embeds: (n, L, D) for the rows `running` (b,) bool of the block; `after` (n, T - hi, D): the
        inputs of the positions after the block (the canvas view), else the runner's own. Returns (n, L, V): the
        block's logits, followed by the shadow block's (L more) with `shadow`. With the canvas view on
        (`canvas_from`), `self.canvas_logits` keeps every generated position's logits."""
        prefix, suffix, block_ids, valid = self.prefix, self.suffix, self.block_ids, self.valid
        if block_embeds.shape[0] != running.shape[0]:  # some rows finished (shape test: no host sync)
            prefix, suffix, block_ids, valid = prefix[running], suffix[running], block_ids[running], valid[running]
        lo, hi = self.lo, self.hi
        x = torch.cat([prefix, block_embeds, suffix if after is None else after], dim=1)  # (n, end, D)
        if shadow:
            logits = self._shadow_forward(x, block_embeds, block_ids, valid)  # (n, end + L, V)
        else:
            logits = self.model.denoise(x, block_ids=block_ids, valid=valid)  # (n, end, V)
        if self.canvas_from is not None:  # a copy: process_logits may edit the block's logits in place
            self.canvas_logits = logits[:, self.canvas_from:x.shape[1]].clone()
        out = [logits[:, lo:hi]]
        if shadow:
            out.append(logits[:, -block_embeds.shape[1]:])
        return out[0] if len(out) == 1 else torch.cat(out, dim=1)

    def _shadow_forward(self, x, block_embeds, block_ids, valid) -> torch.Tensor:
        """One forward of [canvas ; shadow block] (see `with_shadow`). (n, end + L, V)."""
        lo, hi, n, length = self.lo, self.hi, x.shape[0], block_embeds.shape[1]
        mask = decode_attention_mask(block_ids, valid, self.model.block_causal)  # (n, 1, end, end)
        positions = position_ids_from_valid(valid)  # (n, end)
        shadow = self.model.mask_embedding().expand(n, length, x.shape[-1])
        return self.model.denoise_masked(torch.cat([x, shadow], dim=1),
                                         position_ids=torch.cat([positions, positions[:, lo:hi]], dim=1),
                                         attn_mask=with_shadow(mask, mask[:, :, lo:hi], lo))

    def end_block(self, keep: torch.Tensor) -> None:
        """keep: (b,) bool on the CPU, rows of this block that go on to the next block."""


def running_index(running: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the n True entries of `running`, in order, without a host-device sync (`nonzero` syncs)."""
    return torch.argsort((~running).to(torch.uint8), stable=True)[:n]


class _CachedRunner(CanvasRunner):
    """Shared bookkeeping: the cache, and its running-row subset reused while the running set is unchanged."""

    # The block-start forward carries every row (committed ids enter the cache, or the cache is refreshed),
    # and later forwards compute only the block (and, for Fast-dLLM's prefix cache, a suffix): no canvas view.
    partial_first_forward = False

    @property
    def whole_canvas(self) -> bool:
        return False

    def __init__(self, model: CachedDenoiser, *, uniform: bool = False):
        super().__init__(model, uniform=uniform)
        self.reset()

    def reset(self) -> None:
        self.cache: KVCache | None = None
        self._subset: tuple[int, torch.Tensor, KVCache] | None = None

    def _rows(self, running: torch.Tensor, n: int, upto: int) -> tuple[torch.Tensor | None, KVCache]:
        """(row index or None for all rows, cache of those rows). Within a block the running set only
        shrinks, so the same count means the same rows and the gathered cache is reused."""
        if n == running.shape[0]:
            return None, self.cache
        if self._subset is None or self._subset[0] != n:
            index = running_index(running, n)
            self._subset = (n, index, self.cache.select(index, upto))
        return self._subset[1], self._subset[2]

    def _forward_kv(self, x, index, cache, q_lo, q_hi, stop, logits):
        """Forward canvas positions [q_lo, q_hi) of the rows `index` against `cache`."""
        pos, mask = self.positions[:, q_lo:q_hi], self.mask[:, :, q_lo:q_hi, :stop]
        if index is not None:
            pos, mask = pos[index], mask[index]
        return self.model.denoise_kv(x, position_ids=pos, attn_mask=mask, cache=cache, start=q_lo,
                                     stop=stop, logits=logits)


class BlockCausalCache(_CachedRunner):
    """Exact prefix KV cache of a block-causal model (see the module docstring)."""

    mode = "prefix"

    def reset(self) -> None:
        super().reset()
        self.cached = 0  # canvas positions [0, cached) hold final keys/values

    def start_block(self, ids, valid, block_ids, lo, hi):
        rows = ids.shape[0]
        if self.cache is None:  # room for a shadow block after the last block (blocks only get shorter)
            self.cache, self.cached = KVCache(ids.shape[1] + hi - lo), 0
        if self.cache.rows not in (None, rows):
            raise RuntimeError(f"cache holds {self.cache.rows} rows, block has {rows}: call end_block(keep)")
        self.lo, self.hi, self._subset = lo, hi, None
        self.pending = self.model.embedding_table()[ids[:, self.cached:lo]]  # (b, lo - cached, D) hard ids
        self.positions = position_ids_from_valid(valid)[:, :hi]  # (b, hi)
        self.mask = decode_attention_mask(block_ids[:, :hi], valid[:, :hi], True)  # (b, 1, hi, hi)
        return 0

    def forward(self, block_embeds, running, *, shadow: bool = False):
        lo, hi = self.lo, self.hi
        first = self.pending is not None
        if first:  # first step: every row runs; committed hard ids enter the cache
            if block_embeds.shape[0] != running.shape[0]:
                raise RuntimeError("the first forward of a block must include every row of the block")
            x, q_lo, index, cache = torch.cat([self.pending, block_embeds], dim=1), self.cached, None, self.cache
            self.cached, self.pending = lo, None
        else:
            upto = hi + block_embeds.shape[1] if shadow else hi  # the rows' cache, with the shadow's slots
            (index, cache), x, q_lo = self._rows(running, block_embeds.shape[0], upto), block_embeds, lo
        if shadow:  # the shadow's keys/values go to the slots after the block (the next block overwrites them)
            return self._shadow_kv(x, block_embeds, index, cache, q_lo)
        return self._forward_kv(x, index, cache, q_lo, hi, hi, slice(lo - q_lo, None))

    def _shadow_kv(self, x, block_embeds, index, cache, q_lo) -> torch.Tensor:
        """[slice ; shadow block] against the cache (see `with_shadow`): (n, 2L, V), the block's then the
        shadow's logits."""
        lo, hi, n, length = self.lo, self.hi, x.shape[0], block_embeds.shape[1]
        pos, mask = self.positions, self.mask
        if index is not None:
            pos, mask = pos[index], mask[index]
        shadow = self.model.mask_embedding().expand(n, length, x.shape[-1])
        attn = with_shadow(mask[:, :, q_lo:hi, :hi], mask[:, :, lo:hi, :hi], lo)  # (n, 1, hi - q_lo + L, hi + L)
        positions = torch.cat([pos[:, q_lo:hi], pos[:, lo:hi]], dim=1)
        return self.model.denoise_kv(torch.cat([x, shadow], dim=1), position_ids=positions, attn_mask=attn,
                                     cache=cache, start=q_lo, stop=hi + length, logits=slice(lo - q_lo, None))

    def end_block(self, keep):
        self._subset = None
        if not bool(keep.all()):  # keep is on the CPU: no device sync
            self.cache = self.cache.select(keep.nonzero().squeeze(1).to(self.positions.device))


class FastDllmCache(_CachedRunner):
    """Fast-dLLM's approximate caches of a bidirectional model: `dual=False` prefix, `dual=True` dual."""

    supports_shadow = False  # the approximate caches' layouts have no room for it

    def __init__(self, model: CachedDenoiser, *, dual: bool, uniform: bool = False):
        self.dual = dual
        self.mode = "dual" if dual else "prefix"
        super().__init__(model, uniform=uniform)

    def start_block(self, ids, valid, block_ids, lo, hi):
        table, rows, total = self.model.embedding_table(), ids.shape[0], ids.shape[1]
        self.lo, self.hi, self._subset, self.refresh = lo, hi, None, True
        self.prefix = table[ids[:, :lo]]  # (b, lo, D)
        self.suffix = self.future(ids, hi, total)  # (b, T - hi, D)
        self.positions = position_ids_from_valid(valid)  # (b, T)
        self.mask = decode_attention_mask(block_ids, valid, False)  # (b, 1, T, T)
        return 0

    def forward(self, block_embeds, running, **extras):
        lo, hi, total = self.lo, self.hi, self.positions.shape[1]
        if self.refresh:  # block start: one full forward recomputes the whole cache (and is step 1)
            if block_embeds.shape[0] != running.shape[0]:
                raise RuntimeError("the first forward of a block must include every row of the block")
            self.cache, self.refresh = KVCache(total), False
            x = torch.cat([self.prefix, block_embeds, self.suffix], dim=1)  # (b, T, D)
            return self._forward_kv(x, None, self.cache, 0, total, total, slice(lo, hi))
        n = block_embeds.shape[0]
        index, cache = self._rows(running, n, total)
        if self.dual:  # block only; prefix and suffix keys/values from the block-start forward
            return self._forward_kv(block_embeds, index, cache, lo, hi, total, slice(None))
        x = torch.cat([block_embeds, self.suffix[:n]], dim=1)  # (n, T - lo, D): suffix recomputed
        return self._forward_kv(x, index, cache, lo, total, total, slice(0, hi - lo))


class _Compiled:
    """The model with `denoise` / `denoise_kv` wrapped by `torch.compile`; everything else passes through."""

    def __init__(self, model, backend: str):
        self._model = model
        self.denoise = torch.compile(model.denoise, dynamic=True, backend=backend)
        if hasattr(model, "denoise_kv"):
            self.denoise_kv = torch.compile(model.denoise_kv, dynamic=True, backend=backend)

    def __getattr__(self, name):
        return getattr(self._model, name)


def supports_cache(model: object) -> bool:
    return callable(getattr(model, "denoise_kv", None))


class CacheUnavailable(ValueError):
    """A cache mode asked for that the model cannot run; the message names the model and what to do."""


def resolve_mode(model: Denoiser, cache: str = "auto") -> str:
    """The mode a model actually runs for the requested one: `none`, `prefix` (exact when the model is
    block-causal) or `dual` (bidirectional only). CacheUnavailable for `prefix` / `dual` on a model without a
    key/value cache API."""
    if cache not in CACHE_MODES:
        raise ValueError(f"cache must be one of {', '.join(CACHE_MODES)}, got {cache!r}")
    if cache in ("prefix", "dual") and not supports_cache(model):
        folder = getattr(model, "folder", None)
        raise CacheUnavailable(
            f"--cache {cache}: {type(model).__name__}{f' ({folder})' if folder else ''} has no key/value cache the "
            f"workbench can drive (a checkpoint run through its own transformers code), so the cache would be "
            f"ignored; decode with --cache none (or auto). LLaDA checkpoints whose weights map onto the native "
            f"model load into it and run every cache mode (workbench/models/conversion.py)")
    if cache == "none" or not supports_cache(model):
        return "none"
    if model.block_causal:
        return "prefix"  # exact; a block-causal model never sees the suffix, so dual = prefix
    return "none" if cache == "auto" else cache  # approximate caches only on request


def make_runner(model: Denoiser, cache: str = "auto", *, compile: bool | str = False,
                uniform: bool = False) -> CanvasRunner:
    """The runner for `cache` (see the module docstring). `compile`: True (inductor) or a
    `torch.compile` backend name compiles the model's forward; off by default. `uniform`: the canvas is
    uniform-state (the future positions a bidirectional model sees are noise tokens, not masks). A model
    with its own forward scheme (an encoder-decoder model) brings its runner: `model.make_runner(cache)`."""
    own = getattr(model, "make_runner", None)
    if callable(own):
        if compile:
            raise ValueError(f"compile is not available for {type(model).__name__}, which brings its own runner")
        return own(cache)
    mode = resolve_mode(model, cache)
    if compile:
        model = _Compiled(model, "inductor" if compile is True else compile)
    if mode == "none":
        return CanvasRunner(model, uniform=uniform)
    if model.block_causal:
        return BlockCausalCache(model, uniform=uniform)
    return FastDllmCache(model, dual=mode == "dual", uniform=uniform)
