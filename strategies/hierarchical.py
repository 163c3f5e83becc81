"""Hierarchical decoding (Hierarchy-dLLM, training-free).

Each forward, the block's still-masked positions are split into maximal contiguous spans; each span's
most confident position is promoted if conf > low_threshold, every masked position with conf > threshold
(the high threshold) is promoted, and always the block's single most confident one (comparisons strict,
as in the reference). Promoted tokens are final; the block ends when no mask is left.

Defaults: threshold = 0.92 (high), low_threshold = 0.62: dInfer's guide, the one documented pair.
DMax's comparison used low_threshold 0.2 and the Hierarchy-dLLM class default is 0.4; pass
`params={"low_threshold": 0.2}` to reproduce DMax's setting. `--tau` sets the high `threshold`; the two
are not required to be ordered, so a `--tau` sweep below the low threshold stays valid.

Reference switch `mask_logit` (default `remove`: the core takes the MASK logit out of the softmax): `keep` is
dInfer's `HierarchyDecoder` (MASK in the softmax; a chosen position whose argmax is MASK stays open, as
dInfer writes MASK back, and there is no progress fallback).
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from plugins.logits import MASK_LOGIT_RULES, mask_logit_rule
from plugins.promotion import span_maxima
from workbench import BlockState, Promotion, hookimpl, unit_interval


@attrs.frozen(eq=False, kw_only=True)
class Hierarchical:
    """Span-maxima promotion with a high and a low threshold."""

    name: ClassVar[str] = "hierarchical"
    main_threshold: ClassVar[str] = "threshold"

    threshold: float = attrs.field(default=0.92, validator=unit_interval)
    low_threshold: float = attrs.field(default=0.62, validator=unit_interval)
    mask_logit: str = attrs.field(default="remove", validator=attrs.validators.in_(MASK_LOGIT_RULES))

    @hookimpl
    def process_logits(self, state: BlockState, logits: torch.Tensor) -> torch.Tensor:
        """Called by the core after each forward: the MASK rule (`mask_logit`)."""
        return mask_logit_rule(self.mask_logit, state, logits)

    @hookimpl
    def promote(self, state: BlockState) -> torch.Tensor | Promotion:
        """Called by the core once per step: the span maxima; under `mask_logit=keep` a chosen MASK argmax
        stays open and there is no progress fallback (dInfer)."""
        chosen = span_maxima(state, self.low_threshold, self.threshold)
        if self.mask_logit == "keep" and state.mask_id is not None:
            return Promotion(positions=chosen & (state.top != state.mask_id), fallback=False)
        return chosen


STRATEGY = Hierarchical
