"""KL stability: promote mask positions whose predicted distribution stopped moving (KLASS-style).

Paper: Seo Hyun Kim, Sunwoo Hong, Hojung Jung, Youngrok Park, Se-Young Yun, "KLASS: KL-Guided Fast
Inference in Masked Diffusion Models", NeurIPS 2025 (arXiv:2511.05664): a prediction that is both
confident and stable across denoising steps (low token-level KL divergence between consecutive steps'
distributions) is safe to unmask early; many such tokens can be unmasked in one step.

Each step, promote every open mask position with

    KL(p_t || p_{t-1}) <= kl_threshold   and   conf_t >= tau,

where p_t, p_{t-1} are the position's distributions at this and the previous forward of the same block,
and always the most confident open position (no history exists at a block's first forward, so that step
promotes exactly one). The previous distributions live in the state's typed stash, never on the plugin.
KLASS checks stability over a window of past steps; this is the window of one (two consecutive forwards);
the defaults are ours.

    workbench run --strategy threshold --plugin examples/plugins/kl_stability.py --model PATH
    workbench check-plugin examples/plugins/kl_stability.py
"""

from __future__ import annotations

import math
from typing import ClassVar

import attrs
import torch

from workbench import BlockState, StashKey, hookimpl, unit_interval

# (block index, step, probs (B, L, V)) of the latest forward this plugin saw.
PREVIOUS = StashKey[tuple[int, int, torch.Tensor]]()


def _non_negative(instance, attribute, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < math.inf:
        raise ValueError(f"{type(instance).__name__}: parameter {attribute.name!r} must be a finite number >= 0, "
                         f"got {value!r}")


def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per position in nats; (B, L, V) -> (B, L). inf where q = 0 < p."""
    return (torch.special.xlogy(p, p) - torch.special.xlogy(p, q)).sum(-1)


def stable_and_confident(open_: torch.Tensor, conf: torch.Tensor, kl: torch.Tensor, kl_threshold: float,
                         tau: float) -> torch.Tensor:
    """Open positions with kl <= kl_threshold and conf >= tau, plus each row's most confident open one."""
    scores = conf.masked_fill(~open_, -1.0)
    best = torch.zeros_like(open_).scatter_(1, scores.argmax(-1, keepdim=True), open_.any(-1, keepdim=True))
    return (open_ & (kl <= kl_threshold) & (conf >= tau)) | best


@attrs.frozen(eq=False, kw_only=True)
class KLStability:
    """`promote` = KL-stable and confident positions (KLASS, Kim et al., 2025)."""

    needs_probs: ClassVar[bool] = True
    claims: ClassVar[tuple[str, ...]] = ()

    kl_threshold: float = attrs.field(default=0.01, validator=_non_negative)  # nats between consecutive forwards
    tau: float = attrs.field(default=0.5, validator=unit_interval)  # confidence a stable position also needs

    @hookimpl
    def promote(self, state: BlockState) -> torch.Tensor:
        probs = state.probs  # (B, L, V)
        previous = state.stash.get(PREVIOUS)
        if previous is not None and previous[:2] == (state.block_index, state.step - 1):
            kl = kl_divergence(probs, previous[2])  # (B, L)
        else:  # first forward of this block: no history yet
            kl = torch.full_like(state.conf, math.inf)
        state.stash[PREVIOUS] = (state.block_index, state.step, probs.clone())
        return stable_and_confident(state.open_masks, state.conf, kl, self.kl_threshold, self.tau)


STRATEGY = KLStability
