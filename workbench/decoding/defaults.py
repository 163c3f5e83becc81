"""The core's default answers to the decision hooks: an ordinary plugin registered first, `trylast`.

Together they are plain one-token-per-step MDLM decoding: nothing pre-filled, hard inputs, the MASK logit
removed, nothing revoked, no promotion of its own (the core's progress fallback promotes the most confident
open position), final when no open position is left, commit the hard ids. A strategy overrides only what it
changes.
"""

from __future__ import annotations

import torch

from workbench.decoding.markers import hookimpl
from workbench.decoding.state import BlockState
from workbench.models.base import Denoiser

DEFAULTS_NAME = "core-defaults"


def remove_mask_logit(state: BlockState, logits: torch.Tensor) -> torch.Tensor:
    """The MASK logit set to -inf in place (when the model has a mask token): MASK is never a prediction."""
    if state.mask_id is not None:
        logits.select(-1, state.mask_id).fill_(float("-inf"))
    return logits


class CoreDefaults:
    """Default implementations of every decision hook."""

    @hookimpl(trylast=True)
    def fill_block(self, state: BlockState) -> None:
        return None  # nothing fixed: the loop skips the step entirely

    @hookimpl(trylast=True)
    def embed_state(self, state: BlockState, model: Denoiser) -> torch.Tensor:
        table = model.embedding_table()
        if state.uniform:  # open positions hold their current noise token in `ids`
            return table[state.ids]
        return torch.where(state.is_mask[..., None], model.mask_embedding(), table[state.ids])

    @hookimpl(trylast=True)
    def process_logits(self, state: BlockState, logits: torch.Tensor) -> torch.Tensor:
        return remove_mask_logit(state, logits)  # MASK is never a prediction

    @hookimpl(trylast=True)
    def revoke(self, state: BlockState) -> None:
        return None  # nothing revoked: the loop skips the step entirely

    @hookimpl(trylast=True)
    def promote(self, state: BlockState) -> torch.Tensor:
        return torch.zeros_like(state.is_mask)

    @hookimpl(trylast=True)
    def converge(self, state: BlockState) -> torch.Tensor:
        return ~(state.is_mask & state.active).any(-1)

    @hookimpl(trylast=True)
    def commit(self, state: BlockState) -> torch.Tensor:
        # Open positions are left only when the forward cap ended the block: fill them with the current top.
        return torch.where(state.is_mask, state.top, state.ids)
