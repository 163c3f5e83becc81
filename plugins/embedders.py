"""State embedders: the input embeddings of the current block's positions.

All return (B, L, D) in the dtype of the model's embedding table; open positions always get their open input
(`open_embeddings`: the mask embedding e_mask on an absorbing-state canvas, the embedding of the position's
current noise token on a uniform-state one). They differ in what a token position is fed.
"""

from __future__ import annotations

import attrs
import torch

from workbench import BlockState, Denoiser, ModelInputsDenied, StashKey, hookimpl

# Added to the norm before dividing (DMax Eq. 10): keeps h finite when p*E(top) and (1-p)*e_mask cancel.
HYBRID_EPS = 1e-6


def open_embeddings(state: BlockState, model: Denoiser) -> torch.Tensor:
    """What open positions are fed: e_mask (D,) on an absorbing-state canvas (broadcasts), E(noise) (B, L, D)
    on a uniform-state one (`state.ids` holds each open position's current noise token)."""
    return model.embedding_table()[state.ids] if state.uniform else model.mask_embedding()


def mask_embeddings(state: BlockState, model: Denoiser) -> torch.Tensor:
    """The open input at every position (e_mask, or each position's noise). (B, L, D)"""
    inputs = open_embeddings(state, model)
    return inputs.expand(state.batch_size, state.length, model.embedding_table().shape[1])


def hard_embeddings(state: BlockState, model: Denoiser, tokens: torch.Tensor) -> torch.Tensor:
    """E(tokens) at token positions, the open input at open positions. tokens: (B, L) long. (B, L, D)"""
    table = model.embedding_table()
    return torch.where(state.is_mask[..., None], open_embeddings(state, model), table[tokens])


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
# The mean embedding of the noise tokens (SPD's `open_input="mean"` on a uniform-state canvas), once per call.
_MEAN_NOISE = StashKey[torch.Tensor]()
# What SPD's hybrid mixes a token with (`open_input`).
OPEN_INPUTS = ("auto", "mask", "mean")


def mix_target(state: BlockState, model: Denoiser, open_input: str) -> torch.Tensor:
    """The (D,) vector the hybrid mixes E(top) with: e_mask (`mask`; `auto` on an absorbing-state canvas) or
    the mean embedding of the noise tokens (`mean`: the expected input of an open position on a uniform-state
    canvas). `auto` on a uniform-state canvas refuses: DMax's rule mixes toward e_mask, which that canvas
    never feeds, and substituting something else silently would be another algorithm."""
    if open_input == "mean":
        mean = state.stash.get(_MEAN_NOISE)
        if mean is None:
            from workbench import noise_range

            low, high = noise_range(model)
            table = model.embedding_table()
            mean = state.stash[_MEAN_NOISE] = table[low:high].to(torch.promote_types(table.dtype, torch.float32)
                                                                  ).mean(0).to(table.dtype)
        return mean
    if open_input == "auto" and state.uniform:
        raise ModelInputsDenied(
            f"SPD's hybrid mixes each token toward the mask embedding, but this decode is uniform-state (open "
            f"positions are fed random tokens; {type(model).__name__} "
            f"{'has no mask token' if state.mask_id is None else 'is decoded with noise=uniform'}). Choose what "
            f"to mix with: --set open_input=mean (the mean embedding of the noise tokens) or open_input=mask "
            f"(e_mask, only on models that have one), or decode with a hard-token strategy (threshold, "
            f"hierarchical, hard)")
    return model.mask_embedding()


def hybrid_embeddings(state: BlockState, model: Denoiser, open_input: str = "auto") -> torch.Tensor:
    """SPD input: token positions get hybrid(E(top), target, conf), open positions their open input, where
    target is `mix_target` (e_mask on an absorbing-state canvas). (B, L, D)"""
    table, target = model.embedding_table(), mix_target(state, model, open_input)
    norms = state.stash.get(_ROW_NORMS)
    if norms is None:
        norms = state.stash[_ROW_NORMS] = table.to(torch.promote_types(table.dtype, torch.float32)).norm(dim=-1)
    soft = hybrid(table[state.top], target, state.conf, top_norm=norms[state.top])
    opened = target if not state.uniform else open_embeddings(state, model)
    return torch.where(state.is_mask[..., None], opened, soft)


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
    """`embed_state` = the open input everywhere (an ablation: the model never sees its own block predictions)."""

    @hookimpl
    def embed_state(self, state: BlockState, model: Denoiser) -> torch.Tensor:
        return mask_embeddings(state, model)
