"""Convergence tests: per row, is the current block final? Each returns (B,) bool."""

from __future__ import annotations

import attrs
import torch

from workbench import BlockState, hookimpl, unit_interval


def no_mask_left(state: BlockState) -> torch.Tensor:
    """MDLM decoding: the block is final when no active mask position is left."""
    return ~(state.is_mask & state.active).any(-1)


def stable(state: BlockState) -> torch.Tensor:
    """DMax SPD (a): no updated position changed this step.

    Read as: nothing was promoted this step (a promotion turns a mask into a token, a change) and every
    token position's top equals its top at the previous forward. So a block whose last masks were
    promoted needs one more forward to confirm them (the "convergence forward").
    """
    if state.prev_top is None:
        return torch.zeros(state.batch_size, dtype=torch.bool, device=state.ids.device)
    # (B, L) token positions whose top changed; on bools a > b is a & ~b (one op fewer per step)
    changed = ((state.top != state.prev_top) & state.active) > state.is_mask
    return ~(changed.any(-1) | state.promoted.any(-1))


def confident(state: BlockState, tau_acc: float) -> torch.Tensor:
    """DMax SPD (b): every active position, mask positions included, has conf >= tau_acc."""
    return ((state.conf >= tau_acc) >= state.active).all(-1)  # a >= b is a | ~b on bools


def stable_or_confident(state: BlockState, tau_acc: float) -> torch.Tensor:
    return stable(state) | confident(state, tau_acc)


@attrs.frozen(eq=False, kw_only=True)
class StableOrConfident:
    """`converge` = DMax SPD convergence test."""

    tau_acc: float = attrs.field(default=0.9, validator=unit_interval)

    @hookimpl
    def converge(self, state: BlockState) -> torch.Tensor:
        return stable_or_confident(state, self.tau_acc)


@attrs.frozen(eq=False, kw_only=True)
class NoMaskLeft:
    """`converge` = the block is final when no mask is left (MDLM)."""

    @hookimpl
    def converge(self, state: BlockState) -> torch.Tensor:
        return no_mask_left(state)
