"""Hierarchical decoding (Hierarchy-dLLM, training-free).

Each forward, the block's still-masked positions are split into maximal contiguous spans; each span's
most confident position is promoted if conf > low_threshold, every masked position with conf > threshold
(the high threshold) is promoted, and always the block's single most confident one (comparisons strict,
as in the reference). Promoted tokens are final; the block ends when no mask is left.

Defaults: threshold = 0.92 (high), low_threshold = 0.62: dInfer's guide, the one documented pair.
DMax's comparison used low_threshold 0.2 and the Hierarchy-dLLM class default is 0.4; pass
`params={"low_threshold": 0.2}` to reproduce DMax's setting. `--tau` sets the high `threshold`; the two
are not required to be ordered, so a `--tau` sweep below the low threshold stays valid.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from plugins.promotion import span_maxima
from workbench import BlockState, hookimpl, unit_interval


@attrs.frozen(eq=False, kw_only=True)
class Hierarchical:
    """Span-maxima promotion with a high and a low threshold."""

    name: ClassVar[str] = "hierarchical"
    main_threshold: ClassVar[str] = "threshold"

    threshold: float = attrs.field(default=0.92, validator=unit_interval)
    low_threshold: float = attrs.field(default=0.62, validator=unit_interval)

    @hookimpl
    def promote(self, state: BlockState) -> torch.Tensor:
        return span_maxima(state, self.low_threshold, self.threshold)


STRATEGY = Hierarchical
