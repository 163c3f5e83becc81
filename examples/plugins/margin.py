"""Margin confidence: promote mask positions whose top-1 minus top-2 probability clears a threshold.

Paper: Jaeyeon Kim, Kulin Shah, Vasilis Kontonis, Sham Kakade, Sitan Chen, "Train for the Worst, Plan for
the Best: Understanding Token Ordering in Masked Diffusions", ICML 2025 (arXiv:2502.06768): adaptive
inference that unmasks by the top-probability margin p(1st) - p(2nd) rather than p(1st) alone, which
avoids committing positions where two tokens are nearly tied.

Here the margin replaces the confidence of Fast-dLLM's threshold rule: each step, promote every open
mask position with margin >= tau, and always the open position with the largest margin (so a row always
progresses by its own rule). The paper picks a fixed number per step by margin; the threshold form is
ours, for parallel decoding.

    workbench run --strategy threshold --plugin examples/plugins/margin.py --model PATH
    workbench check-plugin examples/plugins/margin.py
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from workbench import BlockState, hookimpl, unit_interval


def top_margin(probs: torch.Tensor) -> torch.Tensor:
    """p(1st) - p(2nd) per position. probs (B, L, V), V >= 2 -> (B, L) float32."""
    top2 = probs.topk(2, dim=-1).values  # (B, L, 2)
    return top2[..., 0] - top2[..., 1]


def margin_threshold(open_: torch.Tensor, margin: torch.Tensor, tau: float) -> torch.Tensor:
    """Open positions with margin >= tau, and each row's largest-margin open position. (B, L) bool."""
    scores = margin.masked_fill(~open_, -1.0)  # margins are >= 0, so a closed position never wins
    best = torch.zeros_like(open_).scatter_(1, scores.argmax(-1, keepdim=True), open_.any(-1, keepdim=True))
    return (open_ & (margin >= tau)) | best


@attrs.frozen(eq=False, kw_only=True)
class MarginThreshold:
    """`promote` = threshold on the top-1 minus top-2 probability margin (Kim et al., 2025)."""

    needs_probs: ClassVar[bool] = True  # the second-best probability needs the full distribution
    claims: ClassVar[tuple[str, ...]] = ()

    tau: float = attrs.field(default=0.8, validator=unit_interval)  # margin a mask position needs

    @hookimpl
    def promote(self, state: BlockState) -> torch.Tensor:
        return margin_threshold(state.open_masks, top_margin(state.probs), self.tau)


STRATEGY = MarginThreshold
