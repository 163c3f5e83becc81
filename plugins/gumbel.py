"""LLaDA's Gumbel-max sampling with the reference's random stream, for strategies that reproduce LLaDA-family
loops token for token (`eb`, `pc-sampler`).

LLaDA's `generate` (and every sampler copied from it: PC-Sampler's, Fast-dLLM's) samples with
`add_gumbel_noise`: `exp(logits) / (-log u) ** T` in float64 with `u = torch.rand_like(logits)` over the
**whole canvas** (prompt and every generated position, the full vocabulary) at every forward, then takes the
argmax. That is a Gumbel-max draw from softmax(logits / T), the distribution the core samples with
`DecodeConfig.temperature`, but a different random stream. To give the reference's tokens, this draws the
same tensor, row by row, from the row's own generator (`state.rng.generator(i)`): seeded with
`workbench.decoding.rng.sample_seed(seed, sample_id)`, it holds the numbers upstream draws after
`torch.manual_seed` with that seed, at batch 1. The draw is (P + G) x V float64 per row per forward, as
upstream's: for a large vocabulary that is the price of the exact stream.
"""

from __future__ import annotations

import torch

from workbench import BlockState


def canvas_gumbel_argmax(state: BlockState, logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """(B, L) long: per running row, argmax of LLaDA's `add_gumbel_noise(logits, temperature)` at the block's
    positions, with the noise drawn over the row's whole reference canvas; `state.top` at done rows.

    logits: (B, L, V), the block's processed logits (float32 or better). The row's reference canvas is its
    prompt without padding plus the decoded positions (`max_new_tokens`, whole blocks with `last_block=full`):
    P_i + G, the block at [P_i + start, P_i + start + L)."""
    tokens = state.top.clone()
    g_len, length, vocab = state.config.decoded_length, state.length, logits.shape[-1]
    before = state.context_valid.sum(-1).tolist()  # (B,) P_i + start: the row's canvas before the block
    for i in state.running.nonzero().flatten().tolist():
        canvas = before[i] - state.start + g_len
        u = torch.rand((1, canvas, vocab), dtype=torch.float64, generator=state.rng.generator(i),
                       device=logits.device)  # the reference's torch.rand_like(logits, dtype=float64)
        noise = (-torch.log(u[0, before[i]:before[i] + length])) ** temperature  # (L, V)
        tokens[i] = (logits[i].to(torch.float64).exp() / noise).argmax(-1)
    return tokens
