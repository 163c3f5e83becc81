"""Confidence-threshold MDLM decoding (Fast-dLLM; the "LLaDA-2.0 origin" baseline of DMax).

Each forward, among the block's open positions: promote every one with conf >= min(tau, max_conf - margin),
max_conf the most confident open position's (dInfer's rule: every position >= tau, and always the most
confident one with every position within `margin` = 1e-5 of it). Promoted tokens are final (never revised:
the core's `state.ids` keeps the token chosen at promotion and the default commit returns them). The block
ends when no open position is left (the core's default `converge`), so an oracle model decodes a block in
one forward.

Defaults: tau = 0.95 (DMax's LLaDA-2.0 baseline; Fast-dLLM uses 0.9). `rule="factor"` selects Fast-dLLM's
factor variant with `factor` f = 1.0 (including its last-rank quirk, see `plugins.promotion.factor_rule`).

Reference switches (`--set name=value`):
- `margin` (default 1e-5, dInfer): 0 promotes only exact ties of the maximum below tau.
- `mask_logit` (default `remove`): the core removes the MASK logit before the softmax, so MASK is never a
  prediction and confidences are renormalised without it. `keep` is dInfer's: the softmax includes MASK, a
  position whose argmax is MASK is never promoted, and a step where every open position predicts MASK
  promotes nothing (no progress fallback, as in dInfer).
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from plugins.promotion import DINFER_MARGIN, factor_rule, threshold_set
from plugins.logits import MASK_LOGIT_RULES, mask_logit_rule
from workbench import BlockState, Promotion, hookimpl, unit_interval


@attrs.frozen(eq=False, kw_only=True)
class Threshold:
    """Fast-dLLM confidence-threshold decoding."""

    name: ClassVar[str] = "threshold"
    main_threshold: ClassVar[str] = "tau"

    tau: float = attrs.field(default=0.95, validator=unit_interval)
    rule: str = attrs.field(default="threshold", validator=attrs.validators.in_(("threshold", "factor")))
    factor: float = attrs.field(default=1.0, validator=attrs.validators.gt(0.0))
    margin: float = attrs.field(default=DINFER_MARGIN, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)])
    mask_logit: str = attrs.field(default="remove", validator=attrs.validators.in_(MASK_LOGIT_RULES))

    @hookimpl
    def process_logits(self, state: BlockState, logits: torch.Tensor) -> torch.Tensor:
        return mask_logit_rule(self.mask_logit, state, logits)

    @hookimpl
    def promote(self, state: BlockState) -> torch.Tensor | Promotion:
        if self.rule == "factor":
            return factor_rule(state, self.factor)
        if self.mask_logit == "keep" and state.mask_id is not None:  # dInfer: never promote a MASK argmax
            candidates = state.open_masks & (state.top != state.mask_id)
            return Promotion(positions=threshold_set(state, self.tau, self.margin, candidates), fallback=False)
        return threshold_set(state, self.tau, self.margin)


STRATEGY = Threshold
