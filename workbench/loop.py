"""The block-decoding loop: batched semi-autoregressive decoding driven by the decision hooks.

Canvas layout (N rows, T = P + G positions): each prompt LEFT-padded with `model.pad_id` to the longest
prompt P (padding has valid=False: never attended to, skipped by position ids), then G =
`config.max_new_tokens` generated positions in blocks of `config.block_size`. block_ids: the prompt is
block 0, generated block k is block k (k >= 1). Treating the whole prompt as one block is a deliberate
simplification of DMax's absolute block alignment (there the first block may hold the prompt tail);
it keeps every generated position masked at block start, so all block positions are active.

Bidirectional models see the not-yet-decoded future blocks as mask embeddings (LLaDA style, so the
generation length matters); block-causal models are forwarded only up to the current block, since
later blocks cannot influence it.

The forward sits behind a runner (`workbench.cache`: `reset` / `start_block` / `forward` / `end_block`),
the seam where a KV cache replaces the full recomputation without touching strategies. By default
`make_runner(model, config.cache)` picks it: the exact prefix cache for block-causal models, none otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import pluggy
import torch

from workbench.cache import CanvasRunner, make_runner
from workbench.models.base import Denoiser
from workbench.registry import Hooks
from workbench.state import BlockState, DecodeConfig, RowResult, Stash


def predict(logits: torch.Tensor, mask_id: int, temperature: float, generator: torch.Generator | None,
            want_probs: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """top (n, L) long, conf (n, L) float32 and optionally probs (n, L, V) float32 from logits (n, L, V).

    Softmax in float32 or better (float64 models keep float64 until conf is stored). MASK is never
    predicted: its logit is removed, so a committed token is always a real token.
    """
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    logits.select(-1, mask_id).fill_(float("-inf"))
    probs = logits.softmax(-1)  # (n, L, V)
    if temperature > 0:
        tempered = (logits / temperature).softmax(-1).flatten(0, 1)  # (n*L, V)
        top = torch.multinomial(tempered, 1, generator=generator).view(logits.shape[:-1])
        conf = probs.gather(-1, top[..., None]).squeeze(-1)  # untempered p(top), as Fast-dLLM
    else:
        conf, top = probs.max(-1)
    return top, conf.float(), probs.float() if want_probs else None


def cut_after_eos(ids: list[int], eos_id: int) -> list[int]:
    """ids up to and including the first EOS: everything after it counts as EOS."""
    return ids[:ids.index(eos_id) + 1] if eos_id in ids else ids


def fallback(state: BlockState, promoted: torch.Tensor) -> torch.Tensor:
    """Progress guarantee: rows with mask positions that promoted nothing get their most confident one."""
    open_masks = state.open_masks
    need = promoted.any(-1, keepdim=True) < open_masks.any(-1, keepdim=True)  # (B, 1): none promoted, some open
    best = state.conf.where(open_masks, -1.0).argmax(-1, keepdim=True)  # (B, 1)
    return torch.zeros_like(promoted).scatter_(1, best, need)


@torch.no_grad()  # decoding never needs gradients; hooks run under no_grad too
def generate(model: Denoiser, prompts: Sequence[Sequence[int]], manager: pluggy.PluginManager,
             config: DecodeConfig, *, runner: CanvasRunner | None = None) -> list[RowResult]:
    """Decode a continuation of every prompt; returns one `RowResult` per prompt, in order."""
    if not prompts:
        return []
    t0 = time.perf_counter()
    hooks = Hooks(manager)
    runner = runner or make_runner(model, config.cache)
    runner.reset()
    device = model.embedding_table().device
    generator = None
    if config.temperature > 0:
        generator = torch.Generator(device=device).manual_seed(config.seed)
    n, p_len, g_len = len(prompts), max(len(p) for p in prompts), config.max_new_tokens

    # Canvas: left-padded prompts, then generated positions (mask until committed).
    canvas = torch.full((n, p_len + g_len), model.mask_id, dtype=torch.long, device=device)  # (N, T)
    valid = torch.ones(n, p_len + g_len, dtype=torch.bool, device=device)
    for i, prompt in enumerate(prompts):
        pad = p_len - len(prompt)
        canvas[i, :pad], valid[i, :pad] = model.pad_id, False
        canvas[i, pad:p_len] = torch.tensor(list(prompt), dtype=torch.long)
    block_of = [0] * p_len + [1 + j // config.block_size for j in range(g_len)]
    block_ids = torch.tensor(block_of, device=device).expand(n, -1)  # (N, T)

    nfe = torch.zeros(n, dtype=torch.long)
    # Context forwards: the prompt prefill counts as one even when it rides in block 1's first forward (the
    # DMax / Fast-dLLM convention), plus what a runner spends outside the refinement steps.
    context_forwards = torch.full((n,), 0 if runner.separate_prefill else 1, dtype=torch.long)
    alive = torch.ones(n, dtype=torch.bool)  # rows that have not yet produced EOS
    block_steps: list[list[int]] = [[] for _ in range(n)]
    decoded = [0] * n  # generated positions decoded per row
    seconds = [0.0] * n
    stash = Stash()

    for k, (start, end) in enumerate(config.block_spans(), start=1):
        rows = alive.nonzero().squeeze(1)  # (B,)
        if rows.numel() == 0:
            break
        lo, hi = p_len + start, p_len + end
        state = BlockState.start_block(block_index=k, start=start, rows=rows.to(device), length=end - start,
                                       mask_id=model.mask_id, vocab_size=model.vocab_size, config=config,
                                       stash=stash)
        context_forwards[rows] += runner.start_block(canvas[rows], valid[rows], block_ids[rows], lo, hi)
        n_running = state.batch_size  # rows still refining this block; the running set only shrinks
        while n_running:
            everyone = n_running == state.batch_size  # a Python int: no host sync, no row indexing
            running = state.running  # (B,)
            embeds = hooks.embed_state(state, model)  # (B, L, D)
            logits = runner.forward(embeds if everyone else embeds[running], running)  # (b, L, V)
            state.step += 1
            state.steps = state.steps + (1 if everyone else running.long())
            top, conf, probs = predict(logits, model.mask_id, config.temperature, generator, hooks.needs_probs)
            state.prev_top = state.top if state.step > 1 else None
            if everyone:
                state.top, state.conf = top, conf
            else:  # out of place: hooks may have kept the previous tensors
                state.top = state.top.index_put((running,), top)
                state.conf = state.conf.index_put((running,), conf)
            if probs is not None:
                state.probs = probs if everyone else state.probs.index_put((running,), probs)

            promoted = hooks.promote(state)  # (B, L) bool
            promoted = promoted | fallback(state, promoted)
            state.promoted = promoted
            state.ids = torch.where(promoted, state.top, state.ids)
            state.is_mask = state.is_mask & ~promoted

            converged = hooks.converge(state)  # (B,)
            state.converged = converged if everyone else converged & running
            # Every running row has run every step of the block, so the forward cap is one Python test.
            state.finishing = running if state.step >= config.cap else state.converged
            finishing = int(state.finishing.sum())  # the step's one host sync the loop itself needs
            if finishing:
                committed = hooks.commit(state)  # (B, L)
                state.ids = torch.where(state.finishing[:, None], committed, state.ids)
                state.is_mask = state.is_mask & ~state.finishing[:, None]
                state.done = state.done | state.finishing
                n_running -= finishing
            hooks.on_step_end(state)

        nfe[rows] += state.steps.cpu()
        hooks.on_block_end(state, state.ids)
        canvas[rows, lo:hi] = state.ids
        now = time.perf_counter() - t0
        has_eos = (state.ids == model.eos_id).any(-1).cpu()  # (B,)
        for i, row in enumerate(rows.tolist()):
            block_steps[row].append(int(state.steps[i]))
            decoded[row] = end
            seconds[row] = now
        alive[rows[has_eos]] = False  # a row stops after the block that contains its EOS
        runner.end_block(~has_eos)  # the runner drops the finished rows' cache

    results = []
    for i in range(n):
        ids = canvas[i, p_len:p_len + decoded[i]].tolist()
        ids = cut_after_eos(ids, model.eos_id)
        tokens = len(ids) - (1 if ids and ids[-1] == model.eos_id else 0)
        results.append(RowResult(ids=ids, nfe=int(nfe[i]), tokens=tokens, seconds=seconds[i],
                                 block_steps=block_steps[i], prompt_len=len(prompts[i]),
                                 nfe_total=int(nfe[i] + context_forwards[i])))
    hooks.on_generation_end(results)
    return results
