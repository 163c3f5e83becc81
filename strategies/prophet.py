"""Prophet early commit (Li et al. 2025, "Diffusion Language Models Know the Answer Before Decoding").

github.com/pixeli99/Prophet at 460afe4, `generate` in `generate_earlyexit.py`: LLaDA's low-confidence
schedule (s = steps / blocks forwards per block; step i promotes the k_i most confident open positions,
k_i = n // s, one more in the first n % s steps) with an early commit. Every forward, before promoting:

    gap = mean over the answer region of (top-1 logit - top-2 logit)
    progress = global step / steps;  threshold = early (progress < 0.33), mid (< 0.67), late
    gap >= threshold  ->  every open position takes this forward's top-1 at once

Defaults (the paper's and the code's): early 7.5, mid 5.0, late 2.5; steps = max_new_tokens (one token per
step); answer_length 5. `--tau` sets `late_threshold`; `mid_threshold` and `early_threshold` default to 2x
and 3x it (the published 3:2:1), so a `--tau` sweep scales the whole schedule.

Two scopes:
- **generation** (Prophet's): the region is the generated positions [answer_start, answer_start +
  answer_length), and the commit fills every open position of the whole generation (later blocks from this
  forward's predictions, at no further forward). Chosen by `answer_start`, or by `constraints` (tokens forced
  at generated offsets, `"pos:id|pos:id"`, the evaluation's "The answer is" scaffold; the region then starts
  two positions after the last one, as its eval_llada.py does). It reads positions outside the current block,
  so it needs the core's canvas view (`canvas_view`): a bidirectional model decoded with `--cache none`.
- **block** (default; the workbench's extension): the region is the current block, and the commit fills the
  rest of the block; the next block starts its schedule afresh. Runs on every model and cache.

`mask_logit=keep` is Prophet's (LLaDA's) softmax and gap (MASK included; a selected position whose top-1 is
MASK stays open, as LLaDA writes MASK back). Greedy only: LLaDA's Gumbel sampling and CFG are `llada`'s.
"""

from __future__ import annotations

import math
from typing import ClassVar

import attrs
import torch

from plugins.logits import MASK_LOGIT_RULES, mask_logit_rule
from plugins.promotion import top_up
from workbench import FREE, BlockState, Promotion, StashKey, UnsupportedSettings, hookimpl, non_negative, positive_int

# Prophet's phases: progress below EARLY_PHASE uses the early threshold, below MID_PHASE the mid one.
EARLY_PHASE, MID_PHASE = 0.33, 0.67
# Generation scope: each exited row's (by prompt index) predicted ids for every generated position.
EXITED = StashKey[dict]()
# The latest step's early-commit decision: (block index, step, (B,) bool), for `converge`.
EXIT_NOW = StashKey[tuple]()


def parse_constraints(text: str) -> dict[int, int]:
    """`"pos:id|pos:id"` -> {generated offset: token id}; ValueError naming the bad part."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split("|"))):
        pos, sep, token = part.partition(":")
        if not sep or not pos.strip().isdigit() or not token.strip().isdigit():
            raise ValueError(f"Prophet: constraint {part!r} is not 'offset:token_id' (e.g. '200:12|201:13')")
        out[int(pos)] = int(token)
    return out


def _constraints(instance, attribute, value) -> None:
    if not isinstance(value, str):
        raise ValueError(f"Prophet: parameter 'constraints' must be a string 'offset:id|offset:id', got {value!r}")
    parse_constraints(value)


def top2_gap(logits: torch.Tensor) -> torch.Tensor:
    """(..., V) -> (...): top-1 minus top-2 logit (Prophet's confidence gap)."""
    top2 = logits.topk(2, dim=-1).values
    return top2[..., 0] - top2[..., 1]


@attrs.frozen(eq=False, kw_only=True)
class Prophet:
    """LLaDA's low-confidence schedule with Prophet's early commit on the top-2 logit gap."""

    name: ClassVar[str] = "prophet"
    main_threshold: ClassVar[str] = "late_threshold"
    # `workbench ablate`'s default sweep of the main knob (the late phase's top-2 logit gap (mid and early scale with it), careful to eager).
    tau_grid: ClassVar[tuple[float, ...]] = (5.0, 2.5, 1.0)
    needs_logits: ClassVar[bool] = True  # the gap is read from the processed logits

    steps: int | None = attrs.field(default=None, validator=attrs.validators.optional(positive_int))
    late_threshold: float = attrs.field(default=2.5, validator=non_negative)
    mid_threshold: float | None = attrs.field(default=None, validator=attrs.validators.optional(non_negative))
    early_threshold: float | None = attrs.field(default=None, validator=attrs.validators.optional(non_negative))
    answer_start: int | None = attrs.field(default=None, validator=attrs.validators.optional(
        [attrs.validators.instance_of(int), attrs.validators.ge(0)]))
    answer_length: int = attrs.field(default=5, validator=positive_int)
    constraints: str = attrs.field(default="", validator=_constraints)
    mask_logit: str = attrs.field(default="remove", validator=attrs.validators.in_(MASK_LOGIT_RULES))

    # -- what the parameters mean -------------------------------------------------------------------------

    @property
    def region_start(self) -> int | None:
        """The answer region's first generated offset (generation scope), None for block scope."""
        if self.answer_start is not None:
            return self.answer_start
        forced = parse_constraints(self.constraints)
        return max(forced) + 2 if forced else None  # eval_llada.py: two past the last forced token

    @property
    def canvas_view(self) -> bool:
        """Generation scope reads and feeds positions outside the block: it asks for the core's canvas view."""
        return self.region_start is not None

    def require_canvas(self, state: BlockState) -> None:
        if not state.canvas_view:
            raise UnsupportedSettings(
                "Prophet: answer_start / constraints (generation scope) read the answer region outside "
                             "the current block, which only a bidirectional model decoded with --cache none "
                             "computes; leave both unset for block scope")

    def phase_threshold(self, progress: float) -> float:
        if progress < EARLY_PHASE:
            return self.early_threshold if self.early_threshold is not None else 3 * self.late_threshold
        if progress < MID_PHASE:
            return self.mid_threshold if self.mid_threshold is not None else 2 * self.late_threshold
        return self.late_threshold

    def schedule(self, state: BlockState) -> tuple[int, int, int]:
        """(forwards per block s, global step of this forward, total steps), as Prophet / LLaDA count them."""
        config = state.config
        if self.steps is None:  # one token per step: s = the block's length
            return state.length, state.start + state.step, config.decoded_length
        blocks = math.ceil(config.max_new_tokens / config.block_size)
        if config.max_new_tokens % config.block_size or self.steps % blocks:
            raise UnsupportedSettings(
                f"Prophet: steps={self.steps} needs max_new_tokens ({config.max_new_tokens}) to be a "
                             f"multiple of block_size ({config.block_size}) and steps a multiple of the {blocks} "
                             f"blocks, as the reference asserts")
        per_block = self.steps // blocks
        return per_block, (state.block_index - 1) * per_block + state.step, self.steps

    # -- hooks ----------------------------------------------------------------------------------------------

    @hookimpl
    def fill_block(self, state: BlockState) -> torch.Tensor | None:
        """Called by the core once per block, before its first forward. Forced tokens (`constraints`) are
        fixed; a row that already committed early (generation scope) gets its predictions for the block."""
        forced = parse_constraints(self.constraints)
        exited = state.stash.get(EXITED, {})
        if not forced and not exited:
            return None
        fill = torch.full_like(state.ids, FREE)
        for offset, token in forced.items():
            if state.start <= offset < state.start + state.length:
                fill[:, offset - state.start] = token
        for i, row in enumerate(state.rows.tolist()):
            if row in exited:
                predicted = exited[row][state.start:state.start + state.length]  # (L,)
                keep = (fill[i] == FREE) & (predicted != state.mask_id)  # a MASK prediction stays open
                fill[i] = torch.where(keep, predicted, fill[i])
        return fill

    @hookimpl
    def embed_state(self, state: BlockState, model) -> torch.Tensor | None:
        """Called by the core before each forward. Generation scope with forced tokens after this block: the
        block's hard inputs and, after it, the forced tokens' embeddings among mask embeddings (the reference
        writes them into the canvas before decoding, so a bidirectional model sees them from the start)."""
        forced = {o: t for o, t in parse_constraints(self.constraints).items()
                  if state.start + state.length <= o < state.config.max_new_tokens}
        if not forced or not self.canvas_view:
            return None  # the core's hard inputs
        self.require_canvas(state)
        table, e_mask = model.embedding_table(), model.mask_embedding()
        block = torch.where(state.is_mask[..., None], e_mask, table[state.ids])  # (B, L, D)
        after = e_mask.expand(state.batch_size, state.after, table.shape[1]).clone()  # (B, A, D)
        for offset, token in forced.items():
            after[:, offset - state.start - state.length] = table[token]
        return torch.cat([block, after], dim=1)

    @hookimpl
    def process_logits(self, state: BlockState, logits: torch.Tensor) -> torch.Tensor:
        """Called by the core after each forward: the MASK rule (`mask_logit`)."""
        return mask_logit_rule(self.mask_logit, state, logits)

    def gap(self, state: BlockState) -> torch.Tensor:
        """(B,) float64: the mean top-2 gap over the answer region (block scope: the block's active positions)."""
        start = self.region_start
        if start is None:
            gaps = top2_gap(state.logits)  # (B, L)
            active = state.active.double()
            return (gaps.double() * active).sum(-1) / active.sum(-1).clamp(min=1)
        end = min(start + self.answer_length, state.config.max_new_tokens)
        return top2_gap(self.canvas(state)[:, start:end]).double().mean(-1)  # the region, in any block

    @hookimpl
    def promote(self, state: BlockState) -> Promotion:
        """Called by the core once per step after `revoke`: every open position where the gap reached the
        phase's threshold (the early commit), else the schedule's k most confident; no progress fallback."""
        per_block, step, total = self.schedule(state)
        exit_now = (self.gap(state) >= self.phase_threshold(step / total)) & state.running  # (B,)
        open_ = state.open_masks
        n = state.active.sum(-1)  # (B,) positions the schedule spreads over the block's steps
        i = state.step - 1
        k = n // per_block + (i < n % per_block).long()  # (B,) LLaDA's get_num_transfer_tokens, step i
        chosen = top_up(state, torch.zeros_like(open_), k, open_) | (open_ & exit_now[:, None])
        if self.mask_logit == "keep" and state.mask_id is not None:
            chosen = chosen & (state.top != state.mask_id)  # LLaDA writes the MASK argmax back: still open
        state.stash[EXIT_NOW] = (state.block_index, state.step, exit_now)
        if self.region_start is not None and bool(exit_now.any()):
            self.remember_exit(state, exit_now)
        return Promotion(positions=chosen, fallback=False)

    def canvas(self, state: BlockState) -> torch.Tensor:
        """(B, G, V) this forward's logits at every generated position, under the block's MASK rule."""
        self.require_canvas(state)
        return mask_logit_rule(self.mask_logit, state, state.canvas_logits.clone())

    def remember_exit(self, state: BlockState, exit_now: torch.Tensor) -> None:
        """Generation scope: keep each exiting row's predictions for the later blocks (`fill_block`)."""
        predicted = self.canvas(state).argmax(-1)  # (B, G)
        exited = state.stash.setdefault(EXITED, {})
        for i in exit_now.nonzero().flatten().tolist():
            exited[int(state.rows[i])] = predicted[i]

    @hookimpl
    def converge(self, state: BlockState) -> torch.Tensor:
        """Called by the core after promotion: final when the row committed early or after the block's s
        forwards (the schedule's end; LLaDA spends them all, the last ones idle when s exceeds the open
        positions, and Prophet's phase counts them)."""
        per_block, _, _ = self.schedule(state)
        block, step, exit_now = state.stash.get(EXIT_NOW, (None, None, None))
        if (block, step) != (state.block_index, state.step):  # another plugin answered promote this step
            exit_now = torch.zeros_like(state.done)
        return exit_now | torch.full_like(state.done, state.step >= per_block)


STRATEGY = Prophet
