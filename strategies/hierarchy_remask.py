"""Hierarchical decoding with remasking (dInfer's `get_transfer_index_hierarchy_remask`).

dInfer (Ma et al. 2025, arXiv:2510.08666; github.com/inclusionAI/dInfer at fce4e32,
`python/dinfer/decoding/parallel_strategy.py`, run by `generate_hierarchy(decoding="hierarchy_remasking")`).
Each forward, in the current block:

1. **Remask** (`revoke`): every token position whose current top-1 probability is below
   `remask_threshold` goes back to open (R of them in a row).
2. **Promote** over the open positions, the remasked ones included: each maximal run's first most confident
   position if conf > `low_threshold`, and every position with conf > `threshold` (strict, as
   `hierarchical`); then, if fewer than R + 1 were chosen, the most confident other open positions until
   R + 1 are: each step decodes at least one position more than it took back. A remasked position chosen
   again takes its current top-1 (a revision); one not chosen stays open.

The block ends when no open position is left (no forward cap in dInfer: keep `--max-forwards` above the
need). Defaults: threshold 0.9, low_threshold 0.4, remask_threshold 0.4 (the values dInfer's tests pass;
the function's own `remask_threshold` default is 0.4). `--tau` sets `threshold`. `mask_logit=keep` is
dInfer's softmax (MASK kept; a chosen position whose top-1 is MASK stays open, as dInfer writes MASK back).
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from plugins.logits import MASK_LOGIT_RULES, mask_logit_rule
from plugins.promotion import span_first_maxima, top_up
from workbench import BlockState, Promotion, hookimpl, unit_interval


@attrs.frozen(eq=False, kw_only=True)
class HierarchyRemask:
    """Span maxima with remasking of low-confidence tokens and at least (remasked + 1) decoded per step."""

    name: ClassVar[str] = "hierarchy-remask"
    main_threshold: ClassVar[str] = "threshold"

    threshold: float = attrs.field(default=0.9, validator=unit_interval)
    low_threshold: float = attrs.field(default=0.4, validator=unit_interval)
    remask_threshold: float = attrs.field(default=0.4, validator=unit_interval)
    mask_logit: str = attrs.field(default="remove", validator=attrs.validators.in_(MASK_LOGIT_RULES))

    @hookimpl
    def process_logits(self, state: BlockState, logits: torch.Tensor) -> torch.Tensor:
        """Called by the core after each forward: the MASK rule (`mask_logit`)."""
        return mask_logit_rule(self.mask_logit, state, logits)

    @hookimpl
    def revoke(self, state: BlockState) -> torch.Tensor:
        """Called by the core once per step, before `promote`: the token positions whose current top-1
        probability fell below `remask_threshold` go back to open."""
        return state.token_positions & (state.conf < self.remask_threshold)

    @hookimpl
    def promote(self, state: BlockState) -> Promotion:
        """Called by the core once per step after `revoke`: the span maxima over the open positions (remasked
        ones included), topped up to (remasked + 1) positions; no progress fallback (the top-up is one)."""
        open_ = state.open_masks
        chosen = ((span_first_maxima(state, open_) & (state.conf > self.low_threshold))
                  | (open_ & (state.conf > self.threshold)))
        need = state.revoked.sum(-1) + 1  # (B,) at least one more decoded than taken back
        chosen = top_up(state, chosen, need, open_)
        if self.mask_logit == "keep" and state.mask_id is not None:
            chosen = chosen & (state.top != state.mask_id)  # dInfer writes the MASK argmax back: still open
        return Promotion(positions=chosen, fallback=False)


STRATEGY = HierarchyRemask
