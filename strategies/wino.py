"""WINO: wide-in drafting, narrow-out verification on a shadow block, as the authors' code runs it.

Paper: Feng Hong, Geng Yu, Yushi Ye, Haicheng Huang, Huangjie Zheng, Ya Zhang, Yanfeng Wang, Jiangchao Yao,
"Wide-In, Narrow-Out: Revokable Decoding for Efficient and Effective DLLMs" (arXiv:2507.18578, ICLR 2026).
Reference: github.com/Feng-Hong/WINO-DLLM, `LLaDA/decoding.py`, `decoding_wino` (commit 9549a1d); golden
transcripts in `tests/reference/wino/` (recorded by `benchmarks/reference/record_wino.py`).

Every forward carries the block and a **shadow block** (`needs_shadow`): L mask inputs at the block's
positions, where shadow position j sees everything block position j sees except position j itself, plus the
shadow. One call, counted as one forward, so each step also predicts every token with its own position
hidden. Per step and row, with m the open positions before the step:

1. **Wide in** (`promote`): draft every open position whose confidence is > `threshold`; when more than
   max_accept = min(max(int(0.7 m), 5), 20) pass, only the max_accept most confident; when none passes,
   the most confident one.
2. **Narrow out** (`revoke`): only when this step drafts more than one token, every token position whose
   token has probability < `threshold_back` on the shadow block goes back to open; when at least
   last_accept fail (the previous step's draft count, 30 at a block's first step), only the
   last_accept - 1 least confident.

Drafts are computed from the open positions before the revocation, so a token drafted at a step is not
verified at it, and a token revoked at a step is not redrafted at it: the core calls `revoke` first, which
computes the drafts, stashes them, and `promote` returns them. Each step revokes at most one token fewer
than the previous step drafted, so a block takes at most L forwards and the default cap (B) never binds.
Confidences are float64 softmaxes, as upstream; tokens the argmax of the logits.

Defaults (the function's and the GSM8K config's): threshold 0.6, threshold_back 0.9. `--tau` sets
`threshold`. `mask_logit=keep` keeps the MASK logit in both softmaxes (upstream); the default `remove` is the
workbench's rule. Deliberate differences: a MASK argmax is never drafted (upstream drafts it and counts the
position decided while it holds the mask id, which a token position here never does); decisions are per
row, so a batch decodes as each row alone (upstream runs batch 1 only).
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from plugins.logits import MASK_LOGIT_RULES, mask_logit_rule, softmax64
from plugins.promotion import top_k_rows
from workbench import BlockState, Promotion, StashKey, hookimpl, unit_interval

DRAFT_SHARE = 0.7  # max_accept = min(max(int(0.7 * open), 5), 20): upstream's hard-coded draft cap
MIN_DRAFTS, MAX_DRAFTS = 5, 20
FIRST_BOUND = 30  # upstream's last_accept at every block start (more than any block it was run with)

# (block index, step, drafted positions (B, L) bool, their tokens (B, L) long): revoke's drafts, for promote.
DRAFTS = StashKey[tuple[int, int, torch.Tensor, torch.Tensor]]()
# (block index, last_accept (B,) long): each row's draft count at its latest step of the block.
BOUND = StashKey[tuple[int, torch.Tensor]]()


def wide_in(state: BlockState, threshold: float, mask_logit: str) -> tuple[torch.Tensor, torch.Tensor]:
    """This step's drafts (B, L) bool and their tokens (B, L) long (WINO's wide in), from the open positions
    as they are before any revocation (upstream's `mask_index_block`)."""
    greedy = state.config.temperature == 0
    tokens = state.logits.argmax(-1) if greedy else state.top  # upstream: argmax of the (Gumbel-noised) logits
    conf = softmax64(state, state.logits, mask_logit).gather(-1, tokens[..., None]).squeeze(-1)  # (B, L)
    open_ = state.open_masks
    if state.mask_id is not None:  # a MASK argmax (mask_logit=keep) is never drafted here
        open_ = open_ & (tokens != state.mask_id)
    conf = conf.masked_fill(~open_, float("-inf"))
    cap = (state.open_masks.sum(-1) * DRAFT_SHARE).long().clamp(MIN_DRAFTS, MAX_DRAFTS)  # (B,) max_accept
    passing = conf > threshold
    most = top_k_rows(conf, cap)  # the cap's most confident, for rows where more pass
    best = top_k_rows(conf, torch.ones_like(cap))  # the most confident, for rows where none passes
    count = passing.sum(-1, keepdim=True)
    drafts = torch.where(count > cap[:, None], most, torch.where(count == 0, best, passing))
    return drafts, tokens


def narrow_out(state: BlockState, drafted: torch.Tensor, bound: torch.Tensor, threshold_back: float,
               mask_logit: str) -> torch.Tensor:
    """(B, L) bool, the token positions revoked this step (WINO's narrow out). drafted: (B,) this step's
    draft counts; bound: (B,) last_accept."""
    shadow = softmax64(state, state.shadow_logits, mask_logit)  # (B, L, V)
    verified = shadow.gather(-1, state.ids[..., None]).squeeze(-1)  # p(current token) with its position hidden
    tokens = state.token_positions
    failing = tokens & (verified < threshold_back)
    lowest = top_k_rows((-verified).masked_fill(~tokens, float("-inf")), bound - 1)
    revoked = torch.where(failing.sum(-1, keepdim=True) >= bound[:, None], lowest, failing)
    return revoked & (drafted > 1)[:, None]  # a step that drafts one token revokes nothing


@attrs.frozen(eq=False, kw_only=True)
class Wino:
    """WINO revokable decoding: wide-in drafts, narrow-out verification on the shadow block."""

    name: ClassVar[str] = "wino"
    main_threshold: ClassVar[str] = "threshold"
    # `workbench ablate`'s default sweep of the main knob (wide-in draft thresholds, careful to parallel).
    tau_grid: ClassVar[tuple[float, ...]] = (0.9, 0.6, 0.3)
    needs_logits: ClassVar[bool] = True  # float64 confidences and the argmax of the logits, as upstream
    needs_shadow: ClassVar[bool] = True  # the verification rides in the same forward
    claims: ClassVar[tuple[str, ...]] = ()  # tokens are revoked: neither monotone nor a contiguous suffix

    threshold: float = attrs.field(default=0.6, validator=unit_interval)  # wide in: drafted above this
    threshold_back: float = attrs.field(default=0.9, validator=unit_interval)  # narrow out: kept above this
    mask_logit: str = attrs.field(default="remove", validator=attrs.validators.in_(MASK_LOGIT_RULES))

    @hookimpl
    def process_logits(self, state: BlockState, logits: torch.Tensor) -> torch.Tensor:
        """Called by the core after each forward; returns the logits under the MASK-logit rule."""
        return mask_logit_rule(self.mask_logit, state, logits)

    @hookimpl
    def revoke(self, state: BlockState) -> torch.Tensor:
        """Called by the core after each forward, before `promote`: computes this step's drafts (stashed for
        `promote`) and returns (B, L) bool, the token positions that fail verification (narrow out)."""
        drafts, tokens = wide_in(state, self.threshold, self.mask_logit)
        drafted = drafts.sum(-1)  # (B,)
        block, bound = state.stash.get(BOUND, (None, None))
        if block != state.block_index:
            bound = torch.full_like(drafted, FIRST_BOUND)
        revoked = narrow_out(state, drafted, bound, self.threshold_back, self.mask_logit)
        state.stash[BOUND] = (state.block_index, torch.where(state.running, drafted, bound))
        state.stash[DRAFTS] = (state.block_index, state.step, drafts, tokens)
        return revoked

    @hookimpl
    def promote(self, state: BlockState) -> Promotion:
        """Called by the core after `revoke`; returns this step's drafts (wide in) with their tokens and no
        progress fallback (the drafts already hold each row's most confident open position)."""
        block, step, drafts, tokens = state.stash.get(DRAFTS, (None, None, None, None))
        if (block, step) != (state.block_index, state.step):  # another plugin answered revoke this step
            drafts, tokens = wide_in(state, self.threshold, self.mask_logit)
            drafts = drafts & ~state.revoked  # what was just revoked waits a step, as in WINO
        return Promotion(positions=drafts & state.open_masks, tokens=tokens, fallback=False)


STRATEGY = Wino
