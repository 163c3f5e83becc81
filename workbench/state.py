"""Decoding state and configuration: what the loop and the hooks share.

`BlockState` is the state of one block for the rows still generating (B rows, L positions). The core
owns it: hooks read it and return decisions; the only thing a plugin may write is its own entry of the
typed `stash` (keyed by a `StashKey` the plugin creates, like pytest's `Stash`).
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import attrs
import torch

T = TypeVar("T")


class StashKey(Generic[T]):
    """A key into a `Stash`; create one per plugin concern (`KEY = StashKey[torch.Tensor]()`)."""

    __slots__ = ()


class Stash:
    """Per-plugin scratch space, typed by its keys. One stash lives for one `generate` call."""

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data: dict[StashKey[Any], object] = {}

    def __setitem__(self, key: StashKey[T], value: T) -> None:
        self._data[key] = value

    def __getitem__(self, key: StashKey[T]) -> T:
        return self._data[key]  # type: ignore[return-value]

    def get(self, key: StashKey[T], default: T | None = None) -> T | None:
        return self._data.get(key, default)  # type: ignore[return-value]

    def setdefault(self, key: StashKey[T], default: T) -> T:
        return self._data.setdefault(key, default)  # type: ignore[return-value]

    def __delitem__(self, key: StashKey[T]) -> None:
        del self._data[key]

    def __contains__(self, key: object) -> bool:
        return key in self._data


# Forward modes of `workbench.cache.make_runner`: auto = exact prefix KV cache where it is exact
# (block-causal models with a cache API), none otherwise.
CACHE_MODES = ("auto", "none", "prefix", "dual")


def _positive(instance, attribute, value):
    if value is not None and value <= 0:
        raise ValueError(f"DecodeConfig.{attribute.name} must be > 0, got {value!r}")


@attrs.frozen(kw_only=True)
class DecodeConfig:
    """How to decode, independent of the strategy.

    Attributes:
        block_size: positions per generated block (DMax: 32).
        max_new_tokens: generated positions per row. When it is not a multiple of `block_size` the last
            block is shorter (max_new_tokens % block_size positions).
        max_forwards_per_block: hard cap on forwards per block (DMax: B); None means `block_size`.
        temperature: 0 = greedy; > 0 samples `top` from softmax(logits / T) with a generator seeded from
            `seed` (`conf` stays the untempered probability of the chosen token, as in Fast-dLLM).
        seed: seed of the sampling generator.
        cache: key/value cache of the forwards, one of `CACHE_MODES` (see `workbench.cache`): `auto` (exact
            prefix cache on block-causal models, none elsewhere), `none`, `prefix` (exact on block-causal
            models, Fast-dLLM's approximate prefix cache on bidirectional ones), `dual` (Fast-dLLM's dual
            cache on bidirectional models). Approximate caches may change the decoded tokens.
    """

    block_size: int = attrs.field(default=32, validator=[attrs.validators.instance_of(int), _positive])
    max_new_tokens: int = attrs.field(default=128, validator=[attrs.validators.instance_of(int), _positive])
    max_forwards_per_block: int | None = attrs.field(
        default=None, validator=[attrs.validators.optional(attrs.validators.instance_of(int)), _positive]
    )
    temperature: float = attrs.field(default=0.0, converter=float, validator=attrs.validators.ge(0.0))
    seed: int = attrs.field(default=0, validator=attrs.validators.instance_of(int))
    cache: str = attrs.field(default="auto", validator=attrs.validators.in_(CACHE_MODES))

    @property
    def cap(self) -> int:
        """Forwards allowed per block."""
        return self.max_forwards_per_block if self.max_forwards_per_block is not None else self.block_size

    def block_spans(self) -> list[tuple[int, int]]:
        """(start, end) offsets of each generated block within the generated positions."""
        return [(s, min(s + self.block_size, self.max_new_tokens))
                for s in range(0, self.max_new_tokens, self.block_size)]


@attrs.define(eq=False, kw_only=True)
class BlockState:
    """Decoding state of the current block for the rows still generating.

    Shapes: B = rows in this block, L = block length, V = vocabulary. All tensors live on the model's
    device. "Mask positions" are `is_mask`; "token positions" are the rest. Positions not masked at
    block start are inactive (`active` False) and never change; with the core's layout (the prompt is
    its own block) every generated position starts masked, so `active` is all True.

    Attributes:
        block_index: 1-based block number (the prompt is block 0).
        start: offset of the block within the generated positions.
        rows: (B,) long, index of each row in the `prompts` passed to `generate`.
        ids: (B, L) long, hard ids: mask id at mask positions, the token fixed at promotion elsewhere.
            Strategies that revise token positions read `top` instead.
        is_mask: (B, L) bool.
        active: (B, L) bool, positions masked at block start.
        top: (B, L) long, argmax (or sampled) token of the latest forward; `ids` before the first one.
        conf: (B, L) float32, probability of `top` under the latest forward; 0 before the first one.
        prev_top: (B, L) long, `top` of the previous forward, None before the second forward.
        probs: (B, L, V) float32, only when a registered plugin has `needs_probs = True`.
        promoted: (B, L) bool, positions promoted at the latest step (fallback included).
        converged: (B,) bool, the latest `converge` answer.
        finishing: (B,) bool, rows that finish at the latest step (converged or capped).
        done: (B,) bool, rows whose block is committed; no forward is spent on them.
        step: forwards run in this block so far (by the rows still running).
        steps: (B,) long, forwards per row in this block.
        config: the `DecodeConfig`.
        mask_id, vocab_size: of the model.
        stash: per-plugin scratch, shared by all blocks of one `generate` call (row `i` of a block
            is prompt `rows[i]`).
    """

    block_index: int
    start: int
    rows: torch.Tensor
    ids: torch.Tensor
    is_mask: torch.Tensor
    active: torch.Tensor
    top: torch.Tensor
    conf: torch.Tensor
    prev_top: torch.Tensor | None = None
    probs: torch.Tensor | None = None
    promoted: torch.Tensor
    converged: torch.Tensor
    finishing: torch.Tensor
    done: torch.Tensor
    step: int = 0
    steps: torch.Tensor
    config: DecodeConfig
    mask_id: int
    vocab_size: int
    stash: Stash = attrs.field(factory=Stash)
    # open_masks of the last (is_mask, active, done) it was computed from: read ~4 times per step (promote,
    # its contract check, the progress fallback, plugins), it is a handful of ops each time otherwise.
    _open_memo: tuple | None = attrs.field(default=None, init=False, repr=False)

    @classmethod
    def start_block(cls, *, block_index: int, start: int, rows: torch.Tensor, length: int, mask_id: int,
                    vocab_size: int, config: DecodeConfig, stash: Stash) -> BlockState:
        """A block whose every position is an active mask position."""
        b, device = rows.shape[0], rows.device
        ids = torch.full((b, length), mask_id, dtype=torch.long, device=device)
        return cls(
            block_index=block_index, start=start, rows=rows, ids=ids,
            is_mask=torch.ones(b, length, dtype=torch.bool, device=device),
            active=torch.ones(b, length, dtype=torch.bool, device=device),
            top=ids.clone(), conf=torch.zeros(b, length, dtype=torch.float32, device=device),
            promoted=torch.zeros(b, length, dtype=torch.bool, device=device),
            converged=torch.zeros(b, dtype=torch.bool, device=device),
            finishing=torch.zeros(b, dtype=torch.bool, device=device),
            done=torch.zeros(b, dtype=torch.bool, device=device),
            steps=torch.zeros(b, dtype=torch.long, device=device),
            config=config, mask_id=mask_id, vocab_size=vocab_size, stash=stash,
        )

    @property
    def batch_size(self) -> int:
        return self.ids.shape[0]

    @property
    def length(self) -> int:
        return self.ids.shape[1]

    @property
    def running(self) -> torch.Tensor:
        """(B,) bool, rows still refining this block."""
        return ~self.done

    @property
    def open_masks(self) -> torch.Tensor:
        """(B, L) bool, active mask positions of rows still running (what `promote` may return)."""
        # The loop replaces these tensors rather than writing into them; `_version` also catches a write.
        key = tuple((t, t._version) for t in (self.is_mask, self.active, self.done))
        memo = self._open_memo
        if memo is None or any(a is not b or va != vb for (a, va), (b, vb) in zip(memo[0], key)):
            memo = self._open_memo = (key, self.is_mask & self.active & ~self.done[:, None])
        return memo[1]


@attrs.frozen(kw_only=True)
class RowResult:
    """What `generate` returns for one prompt.

    Attributes:
        ids: generated token ids, cut after the first EOS (which is kept; at most one trailing EOS).
        nfe: refinement forwards of this row: forwards that predicted its block positions. A prompt prefill
            that rides in block 1's first forward (every runner of the native model) is not a forward of its own.
        nfe_total: `nfe` plus the context forwards, with the prompt prefill counted as its own forward (the
            DMax / Fast-dLLM convention: their reference code runs it separately) and every separate
            context-encoding forward of an encoder-decoder model counted too.
        tokens: generated tokens excluding EOS (= `len(ids)` minus a trailing EOS).
        seconds: wall time from the start of `generate` until this row stopped.
        block_steps: forwards spent on each decoded block.
        prompt_len: length of the prompt.
    """

    ids: list[int]
    nfe: int
    tokens: int
    seconds: float
    block_steps: list[int]
    prompt_len: int
    nfe_total: int = 0

    @property
    def tpf(self) -> float:
        """Tokens per refinement forward (`nfe`)."""
        return self.tokens / self.nfe if self.nfe else 0.0

    @property
    def tpf_total(self) -> float:
        """Tokens per forward with the prefill counted as its own forward (`nfe_total`)."""
        return self.tokens / self.nfe_total if self.nfe_total else 0.0
