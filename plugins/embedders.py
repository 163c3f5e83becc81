"""State embedders: the input embeddings of the current block's positions.

All return (B, L, D) in the dtype of the model's embedding table; mask positions always get the mask
embedding e_mask. They differ in what a token position is fed.
"""

from __future__ import annotations

import attrs
import torch

from workbench.models.base import Denoiser
from workbench.registry import hookimpl
from workbench.state import BlockState, StashKey

# Added to the norm before dividing (DMax Eq. 10): keeps h finite when p*E(top) and (1-p)*e_mask cancel.
HYBRID_EPS = 1e-6


def mask_embeddings(state: BlockState, model: Denoiser) -> torch.Tensor:
    """e_mask at every position. (B, L, D)"""
    e_mask = model.mask_embedding()
    return e_mask.expand(state.batch_size, state.length, e_mask.shape[-1])


def hard_embeddings(state: BlockState, model: Denoiser, tokens: torch.Tensor) -> torch.Tensor:
    """E(tokens) at token positions, e_mask at mask positions. tokens: (B, L) long. (B, L, D)"""
    table = model.embedding_table()
    return torch.where(state.is_mask[..., None], model.mask_embedding(), table[tokens])


def hybrid(e_top: torch.Tensor, e_mask: torch.Tensor, p: torch.Tensor,
           top_norm: torch.Tensor | None = None) -> torch.Tensor:
    """DMax SPD norm-preserving hybrid of a token embedding and the mask embedding.

    e_top: (..., D) E(top), e_mask: (D,), p: (...) weight of the token; top_norm: (...) ||E(top)|| when the
    caller has it (SPD looks it up in a table of row norms). Computed in float32 or better and returned in
    e_top's dtype.
    """
    dtype = e_top.dtype
    work = torch.promote_types(dtype, torch.float32)
    e_top, e_mask, p = e_top.to(work), e_mask.to(work), p.to(work)[..., None]
    top_norm = e_top.norm(dim=-1, keepdim=True) if top_norm is None else top_norm.to(work)[..., None]
    mixed = torch.lerp(e_mask, e_top, p)  # Eq. 9: h~ = p E(top) + (1 - p) e_mask
    target = torch.lerp(e_mask.norm(), top_norm, p)  # Eq. 10: p ||E(top)|| + (1 - p) ||e_mask||
    return (mixed * (target / (mixed.norm(dim=-1, keepdim=True) + HYBRID_EPS))).to(dtype)


# ||E(v)|| of every vocabulary row, computed once per `generate` call (one stash lives for one call).
_ROW_NORMS = StashKey[torch.Tensor]()


def hybrid_embeddings(state: BlockState, model: Denoiser) -> torch.Tensor:
    """SPD input: token positions get hybrid(E(top), e_mask, conf), mask positions e_mask. (B, L, D)"""
    table, e_mask = model.embedding_table(), model.mask_embedding()
    norms = state.stash.get(_ROW_NORMS)
    if norms is None:
        norms = state.stash[_ROW_NORMS] = table.to(torch.promote_types(table.dtype, torch.float32)).norm(dim=-1)
    soft = hybrid(table[state.top], e_mask, state.conf, top_norm=norms[state.top])
    return torch.where(state.is_mask[..., None], e_mask, soft)


@attrs.frozen(eq=False, kw_only=True)
class HardEmbedder:
    """`embed_state` = E(current top) at token positions (hard-token refinement)."""

    @hookimpl
    def embed_state(self, state: BlockState, model: Denoiser) -> torch.Tensor:
        return hard_embeddings(state, model, state.top)


@attrs.frozen(eq=False, kw_only=True)
class HybridEmbedder:
    """`embed_state` = SPD's norm-preserving hybrid at token positions."""

    @hookimpl
    def embed_state(self, state: BlockState, model: Denoiser) -> torch.Tensor:
        return hybrid_embeddings(state, model)


@attrs.frozen(eq=False, kw_only=True)
class MaskEmbedder:
    """`embed_state` = e_mask everywhere (an ablation: the model never sees its own block predictions)."""

    @hookimpl
    def embed_state(self, state: BlockState, model: Denoiser) -> torch.Tensor:
        return mask_embeddings(state, model)
