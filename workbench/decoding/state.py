"""Decoding state and configuration: what the loop and the hooks share.

`BlockState` is the state of one block for the rows still generating (B rows, L positions). The core
owns it: hooks read it and return decisions; the only thing a plugin may write is its own entry of the
typed `stash` (keyed by a `StashKey` the plugin creates, like pytest's `Stash`).
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import attrs
import torch

from workbench.decoding.choices import CACHE_MODES, LAST_BLOCKS, NOISE_KINDS, RNG_MODES
from workbench.models.base import ModelInputsDenied  # noqa: F401  (raised by models, refused by the core)

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


def _positive(instance, attribute, value):
    if value is not None and value <= 0:
        raise ValueError(f"DecodeConfig.{attribute.name} must be > 0, got {value!r}")


@attrs.frozen(kw_only=True)
class DecodeConfig:
    """How to decode, independent of the strategy.

    Attributes:
        block_size: positions per generated block (DMax: 32).
        max_new_tokens: generated positions per row. When it is not a multiple of `block_size`, `last_block`
            says how the last block is decoded.
        max_forwards_per_block: hard cap on forwards per block (DMax: B); None means what the plugins declare
            (`forwards_per_block`), else the block's length (`BlockState.cap` is the one in force).
        temperature: 0 = greedy; > 0 samples `top` from softmax(logits / T) with the generators of `rng`
            (`conf` stays the untempered probability of the chosen token, as in Fast-dLLM).
        seed: seed of the random generators (see `rng`).
        rng: `sample` (default): each sample draws from its own generator, seeded from (`seed`, sample id), so
            its decode does not depend on the batch it is in; `batch`: one generator seeded with `seed` shared
            by the whole `generate` call, and every forward covers every row of the block (a finished row's
            logits are dropped) — transformers' DiffusionGemma `generate` draws and forwards this way.
        noise: what open positions are fed: `auto` (the model's kind), `mask` (the mask embedding: absorbing-
            state decoding), `uniform` (uniformly random tokens, redrawn every step: uniform-state decoding).
        cache: key/value cache of the forwards, one of `CACHE_MODES` (see `workbench.decoding.cache`): `auto` (exact
            prefix cache on block-causal models, none elsewhere), `none`, `prefix` (exact on block-causal
            models, Fast-dLLM's approximate prefix cache on bidirectional ones), `dual` (Fast-dLLM's dual
            cache on bidirectional models). Approximate caches may change the decoded tokens.
        last_block: the last block when `max_new_tokens` is not a multiple of `block_size`: `short` (default)
            decodes only its max_new_tokens % block_size positions; `full` decodes a whole block, as every
            other, and cuts each row's output to `max_new_tokens` afterwards (the positions past the cut are
            decoded and seen by the hooks, never returned) — transformers' DiffusionGemma `generate` decodes
            this way, and a DiffusionGemma model asks for it (`decode_defaults`). Without a remainder the two
            are the same.
    """

    block_size: int = attrs.field(default=32, validator=[attrs.validators.instance_of(int), _positive])
    max_new_tokens: int = attrs.field(default=128, validator=[attrs.validators.instance_of(int), _positive])
    max_forwards_per_block: int | None = attrs.field(
        default=None, validator=[attrs.validators.optional(attrs.validators.instance_of(int)), _positive]
    )
    temperature: float = attrs.field(default=0.0, converter=float, validator=attrs.validators.ge(0.0))
    seed: int = attrs.field(default=0, validator=attrs.validators.instance_of(int))
    cache: str = attrs.field(default="auto", validator=attrs.validators.in_(CACHE_MODES))
    rng: str = attrs.field(default="sample", validator=attrs.validators.in_(RNG_MODES))
    noise: str = attrs.field(default="auto", validator=attrs.validators.in_(NOISE_KINDS))
    last_block: str = attrs.field(default="short", validator=attrs.validators.in_(LAST_BLOCKS))

    @property
    def cap(self) -> int:
        """Forwards allowed per block."""
        return self.max_forwards_per_block if self.max_forwards_per_block is not None else self.block_size

    @property
    def decoded_length(self) -> int:
        """Generated positions decoded per row: `max_new_tokens`, rounded up to whole blocks when `last_block`
        is `full` (the output is cut back to `max_new_tokens`)."""
        if self.last_block == "full":
            return -(-self.max_new_tokens // self.block_size) * self.block_size
        return self.max_new_tokens

    def block_spans(self) -> list[tuple[int, int]]:
        """(start, end) offsets of each decoded block within the generated positions."""
        length = self.decoded_length
        return [(s, min(s + self.block_size, length)) for s in range(0, length, self.block_size)]


# The value of `fill_block` results at positions left to decode.
FREE = -1


@attrs.frozen(kw_only=True)
class Promotion:
    """What `promote` may return instead of a bare (B, L) bool tensor.

    Attributes:
        positions: (B, L) bool, the open positions that become token positions.
        tokens: (B, L) long, the id each promoted position takes; None = `state.top` (the argmax, or the
            sampled token with a temperature). Read only where `positions` is True.
        fallback: the core's progress fallback for this step: True (default) promotes the most confident open
            position of every running row that promoted nothing; False opts out (refine-only steps; the
            forward cap still ends the block). A (B,) bool tensor chooses per row.
    """

    positions: torch.Tensor
    tokens: torch.Tensor | None = None
    fallback: bool | torch.Tensor = True


@attrs.frozen(kw_only=True)
class Guidance:
    """What `guidance` returns to decode a block with classifier-free guidance.

    Every step of the block the core runs a second, unconditional forward of the same block inputs against
    `context`, and the step reads `u + (scale + 1) * (c - u)` (c, u: the conditional and unconditional
    logits; Ho & Salimans 2022, LLaDA's unsupervised CFG) instead of c.

    Attributes:
        context: (B, C) long, the ids of the unconditional context, shaped like `state.context` (e.g. the
            prompt's columns replaced by the mask id, committed blocks kept: LLaDA).
        scale: w >= 0; 0 gives the conditional logits (at the cost of the second forward).
    """

    context: torch.Tensor
    scale: float


@attrs.define(eq=False, kw_only=True)
class BlockState:
    """Decoding state of the current block for the rows still generating.

    Shapes: B = rows in this block, L = block length, V = vocabulary, C = context length. All tensors live on
    the model's device. "Open positions" (`is_mask`) are positions whose token is not decided yet: on an
    absorbing-state canvas (`noise == "mask"`) they hold the mask id and are fed the mask embedding; on a
    uniform-state canvas (`noise == "uniform"`) they hold a uniformly random token, redrawn by the core after
    every step. "Token positions" are the rest. Positions fixed before decoding (by `fill_block`) are inactive
    (`active` False) and never change.

    The core owns the state: hooks read it and return decisions. A plugin may write only its own entry of the
    typed `stash` (keyed by a `StashKey` it creates, like pytest's `Stash`); the core checks after every hook
    call that no core tensor was written or replaced, and names the plugin that did.

    Attributes:
        block_index: 1-based block number (the prompt is block 0).
        start: offset of the block within the generated positions.
        rows: (B,) long, index of each row in the `prompts` passed to `generate`.
        sample_ids: (B,) long, the stable id of each row's sample (`generate(..., sample_ids=)`, default the
            prompt index): join per-sample statistics on it; per-sample generators are seeded from it.
        ids: (B, L) long, hard input ids: at open positions the mask id (absorbing) or the current noise token
            (uniform), elsewhere the token fixed at promotion. Strategies that revise token positions read `top`.
        is_mask: (B, L) bool, open positions.
        active: (B, L) bool, positions open at block start (False where `fill_block` fixed a token).
        top: (B, L) long, argmax (or sampled) token of the latest forward; `ids` before the first one.
        conf: (B, L) float32, probability of `top` under the latest forward; 0 before the first one.
        prev_top: (B, L) long, `top` of the previous forward, None before the second forward.
        probs: (B, L, V) float32, only when a registered plugin has `needs_probs = True` (else reading it raises).
        logits: (B, L, V) float32, the latest forward's logits after `process_logits`, only when a plugin has
            `needs_logits = True` or the model takes self-conditioning (else reading it raises).
        shadow_logits: (B, L, V) float32, only when a plugin has `needs_shadow = True`: the latest forward's logits
            at WINO's shadow block, i.e. position j predicted with position j hidden (raw, before
            `process_logits`; see `workbench.decoding.cache`).
        canvas_logits: (B, G, V) float32, the latest forward's logits at every generated position (G =
            `config.decoded_length`; as the model returned them: `process_logits` sees only the block's), only
            with the canvas view (else reading it raises).
        canvas_view: whether this decode gives the canvas view: a registered plugin asks for it (class or
            instance attribute `canvas_view = True`) and the forward computes every generated position (a
            bidirectional model decoded without a KV cache). Then `canvas_logits` is kept and `embed_state`
            may also give the inputs of the `after` generated positions after the block.
        revoked: (B, L) bool, token positions sent back to open at the latest step (`revoke`).
        promoted: (B, L) bool, positions promoted at the latest step, the core's fallback included.
        fallback: (B, L) bool, the positions of `promoted` that the core's progress fallback chose.
        waived: (B,) bool, rows whose `promote` answer opted out of the fallback at the latest step.
        converged: (B,) bool, the latest `converge` answer.
        finishing: (B,) bool, rows that finish at the latest step (converged or capped).
        done: (B,) bool, rows whose block is committed; no forward is spent on them.
        step: forwards run in this block so far (by the rows still running).
        steps: (B,) long, forwards per row in this block.
        cap: the forward cap of this block: `--max-forwards` when given, else the most any plugin's
            `forwards_per_block(length)` declares, else the block size. A row still running at the cap-th
            forward finishes whatever `converge` says.
        config: the `DecodeConfig`.
        noise: `mask` or `uniform`, what open positions are fed (`DecodeConfig.noise` resolved for the model).
        mask_id: the model's mask id (None when the model has no mask token), vocab_size: of the model.
        context: (B, C) long, the row's left-padded prompt followed by its committed blocks (read-only).
        context_valid: (B, C) bool, False at left padding.
        rng: `workbench.decoding.rng.RowRandom`, the random draws of this decode (per sample or per batch, see
            `DecodeConfig.rng`); `state.rng.generator(i)` is row i's generator.
        model: the `Denoiser` being decoded (read-only: its facts, e.g. `model.eos_id`).
        stash: per-plugin scratch, shared by all blocks of one `generate` call (row `i` of a block
            is prompt `rows[i]`).
    """

    block_index: int
    start: int
    rows: torch.Tensor
    sample_ids: torch.Tensor
    ids: torch.Tensor
    is_mask: torch.Tensor
    active: torch.Tensor
    top: torch.Tensor
    conf: torch.Tensor
    prev_top: torch.Tensor | None = None
    revoked: torch.Tensor
    promoted: torch.Tensor
    fallback: torch.Tensor
    waived: torch.Tensor
    converged: torch.Tensor
    finishing: torch.Tensor
    done: torch.Tensor
    step: int = 0
    steps: torch.Tensor
    cap: int = 0
    config: DecodeConfig
    noise: str = "mask"
    mask_id: int | None
    vocab_size: int
    context: torch.Tensor | None = None
    context_valid: torch.Tensor | None = None
    rng: Any = None
    model: Any = None
    stash: Stash = attrs.field(factory=Stash)
    # probs / logits behind properties, so that reading them without asking says what to set.
    _probs: torch.Tensor | None = attrs.field(default=None, alias="probs")
    _logits: torch.Tensor | None = attrs.field(default=None, alias="logits")
    _shadow_logits: torch.Tensor | None = attrs.field(default=None, alias="shadow_logits")
    _canvas_logits: torch.Tensor | None = attrs.field(default=None, alias="canvas_logits")
    canvas_view: bool = False
    # open_masks of the last (is_mask, active, done) it was computed from: read ~4 times per step (promote,
    # its contract check, the progress fallback, plugins), it is a handful of ops each time otherwise.
    _open_memo: tuple | None = attrs.field(default=None, init=False, repr=False)

    @classmethod
    def start_block(cls, *, block_index: int, start: int, rows: torch.Tensor, length: int, mask_id: int | None,
                    vocab_size: int, config: DecodeConfig, stash: Stash, sample_ids: torch.Tensor | None = None,
                    ids: torch.Tensor | None = None, noise: str = "mask", cap: int | None = None,
                    **extra) -> BlockState:
        """A block whose every position is an active open position. `ids`: the open positions' inputs
        (noise tokens on a uniform-state canvas); default the mask id everywhere."""
        b, device = rows.shape[0], rows.device
        if ids is None:
            ids = torch.full((b, length), FREE if mask_id is None else mask_id, dtype=torch.long, device=device)
        false = torch.zeros(b, length, dtype=torch.bool, device=device)
        return cls(
            block_index=block_index, start=start, rows=rows,
            sample_ids=rows.clone() if sample_ids is None else sample_ids, ids=ids,
            is_mask=torch.ones(b, length, dtype=torch.bool, device=device),
            active=torch.ones(b, length, dtype=torch.bool, device=device),
            top=ids.clone(), conf=torch.zeros(b, length, dtype=torch.float32, device=device),
            revoked=false, promoted=false, fallback=false,
            waived=torch.zeros(b, dtype=torch.bool, device=device),
            converged=torch.zeros(b, dtype=torch.bool, device=device),
            finishing=torch.zeros(b, dtype=torch.bool, device=device),
            done=torch.zeros(b, dtype=torch.bool, device=device),
            steps=torch.zeros(b, dtype=torch.long, device=device),
            config=config, noise=noise, mask_id=mask_id, vocab_size=vocab_size, stash=stash,
            cap=config.cap if cap is None else cap, **extra,
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
    def uniform(self) -> bool:
        """True on a uniform-state canvas (open positions hold random tokens, no mask embedding)."""
        return self.noise == "uniform"

    @property
    def probs(self) -> torch.Tensor:
        if self._probs is None:
            raise AttributeError("state.probs is not computed for this decode: a plugin that reads the full "
                                 "distribution sets the class attribute `needs_probs = True`")
        return self._probs

    @probs.setter
    def probs(self, value: torch.Tensor | None) -> None:
        self._probs = value

    @property
    def logits(self) -> torch.Tensor:
        if self._logits is None:
            raise AttributeError("state.logits is not kept for this decode: a plugin that reads them sets the "
                                 "class attribute `needs_logits = True`")
        return self._logits

    @logits.setter
    def logits(self, value: torch.Tensor | None) -> None:
        self._logits = value

    @property
    def shadow_logits(self) -> torch.Tensor:
        if self._shadow_logits is None:
            raise AttributeError("state.shadow_logits is not computed for this decode: a plugin that reads the "
                                 "shadow block sets the class attribute `needs_shadow = True`")
        return self._shadow_logits

    @shadow_logits.setter
    def shadow_logits(self, value: torch.Tensor | None) -> None:
        self._shadow_logits = value

    @property
    def canvas_logits(self) -> torch.Tensor:
        if self._canvas_logits is None:
            raise AttributeError("state.canvas_logits is not kept for this decode: a plugin that reads every "
                                 "generated position sets `canvas_view = True`, and only a bidirectional model "
                                 "decoded without a KV cache computes them (check state.canvas_view)")
        return self._canvas_logits

    @canvas_logits.setter
    def canvas_logits(self, value: torch.Tensor | None) -> None:
        self._canvas_logits = value

    @property
    def after(self) -> int:
        """Generated positions after this block (what a canvas-view `embed_state` also gives inputs for)."""
        return self.config.decoded_length - self.start - self.length

    @property
    def has_probs(self) -> bool:
        return self._probs is not None

    @property
    def open_masks(self) -> torch.Tensor:
        """(B, L) bool, active open positions of rows still running (what `promote` may return)."""
        # The loop replaces these tensors rather than writing into them; `_version` also catches a write.
        key = tuple((t, t._version) for t in (self.is_mask, self.active, self.done))
        memo = self._open_memo
        if memo is None or any(a is not b or va != vb for (a, va), (b, vb) in zip(memo[0], key)):
            memo = self._open_memo = (key, self.is_mask & self.active & ~self.done[:, None])
        return memo[1]

    @property
    def token_positions(self) -> torch.Tensor:
        """(B, L) bool, active token positions of rows still running (what `revoke` may return)."""
        return ~self.is_mask & self.active & ~self.done[:, None]


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
        sample_id: the sample's stable id (`generate(..., sample_ids=)`).
        extras: per-sample values observers add (JSON data; `on_generation_end` writes
            `results[i].extras["name"] = value`); `evaluate` stores them with the sample. The core adds
            `unfilled` (positions left with the mask id) when a strategy leaves any.
    """

    ids: list[int]
    nfe: int
    tokens: int
    seconds: float
    block_steps: list[int]
    prompt_len: int
    nfe_total: int = 0
    sample_id: int = 0
    extras: dict = attrs.field(factory=dict, eq=False)

    @property
    def tpf(self) -> float:
        """Tokens per refinement forward (`nfe`)."""
        return self.tokens / self.nfe if self.nfe else 0.0

    @property
    def tpf_total(self) -> float:
        """Tokens per forward with the prefill counted as its own forward (`nfe_total`)."""
        return self.tokens / self.nfe_total if self.nfe_total else 0.0
