"""KLASS: unmask the positions whose prediction is confident and has stopped moving, as the authors' code runs it.

Paper: Seo Hyun Kim, Sunwoo Hong, Hojung Jung, Youngrok Park, Se-Young Yun, "KLASS: KL-Adaptive Stability
Sampling for Fast Inference in Masked Diffusion Models" (NeurIPS 2025, arXiv:2511.05664). Reference:
github.com/shkim0116/KLASS, `src/model/llada_klass.py`, `stable_confident_decode` with `alg="klass"`
(commit ad87ecb, the LLaDA version: semi-autoregressive blocks); golden transcripts in
`tests/reference/klass/` (recorded by `benchmarks/reference/record_klass.py`).

Per forward and row, with p_t a position's float64 distribution at this forward:

1. Stability score KL_t = sum_v p_t (log(p_t + 1e-12) - log(p_{t-1} + 1e-12)), p_{t-1} the previous
   forward's; the last `history_length` H scores are kept.
2. A position is **ready** when it is open, p_t(argmax) > `conf_threshold` and its last H scores are all
   < `kl_threshold` (tested from the H-th forward of a block on).
3. If any position is ready, unmask the ready ones (`unmask`: `all`; `max_conf` the most confident ready
   one; `min_kl` the ready one of lowest current score). Otherwise the block's schedule decides: the k most
   confident open positions, k from LLaDA's `get_num_transfer_tokens` over the forward cap (the block's
   positions spread evenly over `max_forwards_per_block` steps, the first steps one more). The default cap
   B gives one token per step, upstream's published steps = gen_length; upstream's (gen_length G,
   block_length L, steps S) is `--block-size L --max-new-tokens G --max-forwards S*L/G` here.

The scores cross blocks, as upstream's: at a block's first forward p_{t-1} is the previous block's last
forward at the same positions (predicted as masks then). The canvas view provides them where the forward
computes them (`canvas_view`: bidirectional models decoded without a cache); on block-causal models, under a
KV cache and at the first block, p_{t-1} = 0, as at upstream's first block (never stable).

Defaults (the function's and the LLaDA evaluation script's): conf_threshold 0.9, kl_threshold 0.01,
history_length 2, unmask all. `--tau` sets `conf_threshold`. Reference switches: `mask_logit=keep` (the
softmax includes MASK, upstream; a MASK argmax is then "unmasked" as MASK, i.e. left open, as upstream's
no-op), `fill_at_cap=false` (positions still open when the cap ends a block stay masked, upstream: possible
when ready steps unmask fewer tokens than the schedule would). Deliberate differences: a schedule step never
unmasks more positions than are open (upstream's top-k then overwrites prompt or decided tokens with their
argmax); decisions are per row, so a batch decodes as each row alone (upstream runs batch 1 only).
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from plugins.logits import MASK_LOGIT_RULES, mask_logit_rule, softmax64
from plugins.promotion import top_k_rows
from workbench import BlockState, Promotion, StashKey, hookimpl, non_negative, positive_int, unit_interval

KL_EPS = 1e-12  # upstream adds it inside both logs: KL against a zero distribution is finite (~27.6 nats)
UNMASK_RULES = ("all", "max_conf", "min_kl")


@attrs.frozen(kw_only=True)
class Memory:
    """What KLASS keeps from one forward to the next (in the stash, replaced every step).

    block: the block index; rows: (B,) prompt index of each row; p: (B, L, V) float64, the latest
    distributions; history: (B, L, H) float64, the latest H scores, newest last; ahead: (B, A, V) the
    latest forward's logits after the block (A = 0 or None where there are none)."""

    block: int
    rows: torch.Tensor
    p: torch.Tensor
    history: torch.Tensor
    ahead: torch.Tensor | None


MEMORY = StashKey[Memory]()


def stability(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KLASS's score KL(p || q) with upstream's eps: (..., V) float64 -> (...)."""
    return (p * ((p + KL_EPS).log() - (q + KL_EPS).log())).sum(-1)


def first_look(state: BlockState, memory: Memory | None, mask_logit: str) -> torch.Tensor:
    """p_{t-1} (B, L, V) at a block's first forward: the previous block's last forward at these positions,
    zeros where the forward computed none (the first block, block-causal models, KV caches)."""
    p_prev = torch.zeros(state.batch_size, state.length, state.vocab_size, dtype=torch.float64,
                         device=state.ids.device)
    if memory is not None and memory.ahead is not None and memory.ahead.shape[1]:
        where = (memory.rows[None, :] == state.rows[:, None]).long().argmax(-1)  # (B,): rows only ever leave
        ahead = softmax64(state, memory.ahead[where], mask_logit)  # (B, A, V)
        width = min(state.length, ahead.shape[1])
        p_prev[:, :width] = ahead[:, :width]
    return p_prev


def lookahead(state: BlockState) -> torch.Tensor | None:
    """(B, A, V): the forward's logits at the positions right after the block, up to one block length, from
    the canvas view; None where this decode has none (block-causal models, KV caches)."""
    if not state.canvas_view:
        return None
    first = state.start + state.length
    return state.canvas_logits[:, first:first + state.length]


def schedule(state: BlockState) -> torch.Tensor:
    """(B,) long, how many positions a step without a ready one unmasks: LLaDA's `get_num_transfer_tokens`,
    the block's active positions spread over the forward cap, the first steps one more."""
    active = state.active.sum(-1)  # (B,)
    base, extra = active // state.cap, active % state.cap
    return base + (state.step - 1 < extra).long()


@attrs.frozen(eq=False, kw_only=True)
class Klass:
    """KL-adaptive stability sampling (the authors' LLaDA sampler)."""

    name: ClassVar[str] = "klass"
    main_threshold: ClassVar[str] = "conf_threshold"
    # `workbench ablate`'s default sweep of the main knob (confidence thresholds, careful to parallel).
    tau_grid: ClassVar[tuple[float, ...]] = (0.95, 0.9, 0.7)
    needs_logits: ClassVar[bool] = True  # float64 distributions of the processed logits, as upstream
    canvas_view: ClassVar[bool] = True  # the next block's distributions (the canvas view): scores cross blocks
    claims: ClassVar[tuple[str, ...]] = ("monotonicity",)  # an unmasked token never changes

    conf_threshold: float = attrs.field(default=0.9, validator=unit_interval)
    kl_threshold: float = attrs.field(default=0.01, validator=non_negative)
    history_length: int = attrs.field(default=2, validator=positive_int)
    unmask: str = attrs.field(default="all", validator=attrs.validators.in_(UNMASK_RULES))
    mask_logit: str = attrs.field(default="remove", validator=attrs.validators.in_(MASK_LOGIT_RULES))
    fill_at_cap: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))

    @hookimpl
    def process_logits(self, state: BlockState, logits: torch.Tensor) -> torch.Tensor:
        """Called by the core after each forward; returns the logits under the MASK-logit rule."""
        return mask_logit_rule(self.mask_logit, state, logits)

    @hookimpl
    def promote(self, state: BlockState) -> Promotion:
        """Called by the core once per forward. Returns the ready positions (stable and confident, chosen by
        `unmask`), else the schedule's most confident open positions, with the argmax tokens of the float64
        distributions and no core fallback (a MASK argmax stays open: upstream's no-op)."""
        memory = state.stash.get(MEMORY)
        fresh = memory is None or memory.block != state.block_index
        p_prev = first_look(state, memory, self.mask_logit) if fresh else memory.p  # (B, L, V)
        history = (torch.zeros(state.batch_size, state.length, self.history_length, dtype=torch.float64,
                               device=state.ids.device) if fresh else memory.history)  # (B, L, H)
        p = softmax64(state, state.logits, self.mask_logit)  # (B, L, V)
        conf, tokens = p.max(-1)  # (B, L): upstream's curr_conf and x0
        score = stability(p, p_prev)  # (B, L)
        latest = torch.cat([history[..., 1:], score[..., None]], dim=-1)  # upstream's roll, newest last
        run = state.running[:, None, None]  # rows already done in this block keep what they had
        state.stash[MEMORY] = Memory(block=state.block_index, rows=state.rows, p=torch.where(run, p, p_prev),
                                     history=torch.where(run, latest, history), ahead=lookahead(state))
        open_ = state.open_masks
        stable = (latest < self.kl_threshold).all(-1) & (state.step >= self.history_length)  # H forwards seen
        ready = stable & (conf > self.conf_threshold) & open_
        one = torch.ones_like(state.steps)
        if self.unmask == "max_conf":
            ready = top_k_rows(conf.masked_fill(~ready, float("-inf")), one)
        elif self.unmask == "min_kl":
            ready = top_k_rows((-score).masked_fill(~ready, float("-inf")), one)
        scheduled = top_k_rows(conf.masked_fill(~open_, float("-inf")), schedule(state))
        chosen = torch.where(ready.any(-1, keepdim=True), ready, scheduled)
        if state.mask_id is not None:
            chosen = chosen & (tokens != state.mask_id)  # unmasking a MASK argmax changes nothing upstream
        return Promotion(positions=chosen, tokens=tokens, fallback=False)

    @hookimpl
    def commit(self, state: BlockState) -> torch.Tensor:
        """Called by the core when rows finish; returns the block's final ids: unmasked tokens as they are, and
        the positions still open at the cap filled with their top, or left masked with `fill_at_cap=false`
        (upstream). Answered here rather than deferred (None), so that composed with a refining strategy
        (`check-plugin klass` combines it with hard and spd) tokens stay final, as `claims` says."""
        return torch.where(state.is_mask, state.top, state.ids) if self.fill_at_cap else state.ids


STRATEGY = Klass
