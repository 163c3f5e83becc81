"""EB-sampler: entropy-bounded unmasking, as a `promote` plugin for any strategy.

Paper: Heli Ben-Hamu, Itai Gat, Daniel Severo, Niklas Nolte, Brian Karrer, "Accelerated Sampling from
Masked Diffusion Models via Entropy Bounded Unmasking", 2025 (arXiv:2505.24857).

Each step, sort the open mask positions by an error proxy (highest confidence first, or lowest entropy
first) and promote the longest prefix U of that order whose entropies satisfy the paper's bound

    sum_{l in U} H(p_l) - max_{l in U} H(p_l) <= gamma,

where H(p_l) is the entropy of position l's predicted distribution. The left side is 0 for one position,
so at least one position is promoted per row; it never decreases as U grows, so the admitted set is a
prefix. gamma = 0 decodes one token per step unless several are certain (H = 0); a larger gamma trades
accuracy for parallelism.

    workbench run --strategy threshold --plugin examples/plugins/eb_sampler.py --model PATH
    workbench check-plugin examples/plugins/eb_sampler.py

Differences from the reference: the bound is applied within the current block (semi-autoregressive
decoding); tokens are the argmax (`state.top`), as everywhere in the workbench.
"""

from __future__ import annotations

import math
from typing import ClassVar

import attrs
import torch

from workbench import BlockState, hookimpl


def _non_negative(instance, attribute, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < math.inf:
        raise ValueError(f"{type(instance).__name__}: parameter {attribute.name!r} must be a finite number >= 0, "
                         f"got {value!r}")


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """H(p) in nats per position. probs (B, L, V) -> (B, L); 0 log 0 = 0."""
    return -torch.special.xlogy(probs, probs).sum(-1)


def entropy_bounded(open_: torch.Tensor, conf: torch.Tensor, ent: torch.Tensor, gamma: float,
                    order: str = "confidence") -> torch.Tensor:
    """The EB-sampler set: open_ (B, L) bool, conf and ent (B, L) float. Returns (B, L) bool."""
    key = conf if order == "confidence" else -ent
    key = key.masked_fill(~open_, -math.inf)  # closed positions sort last
    rank = key.argsort(dim=-1, descending=True, stable=True)  # (B, L) positions, best first
    h = ent.gather(1, rank).masked_fill(~open_.gather(1, rank), 0.0).double()  # (B, L) in sorted order
    slack = h.cumsum(-1) - h.cummax(-1).values  # sum H - max H over each prefix (non-decreasing)
    admitted = (slack <= gamma).long().cumprod(-1).bool() & open_.gather(1, rank)
    return torch.zeros_like(open_).scatter_(1, rank, admitted)


@attrs.frozen(eq=False, kw_only=True)
class EBSampler:
    """`promote` = entropy-bounded unmasking (Ben-Hamu et al., 2025)."""

    needs_probs: ClassVar[bool] = True  # the entropy needs the full distribution (state.probs)
    claims: ClassVar[tuple[str, ...]] = ()  # a set, not a left-to-right prefix: no contiguity

    gamma: float = attrs.field(default=0.1, validator=_non_negative)  # entropy budget (nats) per step
    order: str = attrs.field(default="confidence", validator=attrs.validators.in_(("confidence", "entropy")))

    @hookimpl
    def promote(self, state: BlockState) -> torch.Tensor:
        return entropy_bounded(state.open_masks, state.conf, entropy(state.probs), self.gamma, self.order)


STRATEGY = EBSampler
