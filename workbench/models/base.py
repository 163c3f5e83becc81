"""The `Denoiser` protocol: what the decoding loop needs from a model.

The loop never touches a model's internals. It asks for the input embedding table (to build hard and
soft inputs), the mask embedding, and logits for a batch of input embeddings laid out as a canvas of
prompt and blocks. The attention layout (block-causal or bidirectional) is the model's business: the
loop passes, for every position, which block it belongs to and whether it is padding.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Denoiser(Protocol):
    """A diffusion language model as seen by the decoding loop.

    Attributes:
        vocab_size: number of rows of the output distribution (V).
        mask_id: the [MASK] token id; its embedding is `mask_embedding()`.
        eos_id: end of sequence, doubles as answer padding (LLaDA convention).
        pad_id: left padding of prompts in a batch; never attended to.
        block_causal: True when a position only sees blocks up to its own (exact prefix KV cache).
    """

    vocab_size: int
    mask_id: int
    eos_id: int
    pad_id: int
    block_causal: bool

    def embedding_table(self) -> torch.Tensor:
        """The input embedding matrix E, unscaled: (V, D), the model's dtype."""

    def mask_embedding(self) -> torch.Tensor:
        """e_mask = E[mask_id]: (D,)."""

    def denoise(
        self,
        inputs_embeds: torch.Tensor,
        *,
        block_ids: torch.Tensor,
        valid: torch.Tensor,
    ) -> torch.Tensor:
        """Logits for every position of a canvas.

        Args:
            inputs_embeds: (N, L, D) input embeddings.
            block_ids: (N, L) long, the block of each position (prompt = 0, first generated block = 1, ...).
                A block-causal model lets a query in block b see keys in blocks <= b.
            valid: (N, L) bool, False for left padding (never attended to, position ids skip it).

        Returns:
            (N, L, V) logits in float32 or the model's dtype.
        """

    # Optional extras the loop looks for (not part of the protocol's required surface):
    # `denoise_kv` (a slice against a KV cache, `workbench.decoding.cache.CachedDenoiser`), `make_runner`,
    # `noise` / `noise_range()`, `self_conditioning`, `eos_ids`, `decode_defaults()`, and
    # `denoise_masked(inputs_embeds, *, position_ids, attn_mask)`: logits of a canvas with explicit position ids
    # (N, Q) and an (N, 1, Q, Q) bool attention mask, which WINO's shadow block needs (`needs_shadow`).


class ModelInputsDenied(RuntimeError):
    """A plugin asked the model for something this decode does not have (e.g. a mask embedding on a
    uniform-state canvas); the message names what and how to fix it."""


def noise_range(model: Denoiser) -> tuple[int, int]:
    """[low, high) of the random tokens fed to open positions of a uniform-state canvas: the model's own
    range (the ids its uniform training drew from) or the whole vocabulary."""
    own = getattr(model, "noise_range", None)
    return tuple(own()) if callable(own) else (0, model.vocab_size)
