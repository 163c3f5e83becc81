"""The block-decoding loop: batched semi-autoregressive decoding driven by the decision hooks.

Canvas layout (N rows, T = P + G positions): each prompt LEFT-padded with `model.pad_id` to the longest
prompt P (padding has valid=False: never attended to, skipped by position ids), then G =
`config.decoded_length` generated positions in blocks of `config.block_size` (`max_new_tokens`, or whole
blocks with `last_block="full"`, whose outputs are cut to `max_new_tokens`). block_ids: the prompt is
block 0, generated block k is block k (k >= 1). Treating the whole prompt as one block is a deliberate
simplification of DMax's absolute block alignment (there the first block may hold the prompt tail);
it keeps every generated position masked at block start, so all block positions are active.

Bidirectional models see the not-yet-decoded future blocks as mask embeddings (LLaDA style, so the
generation length matters); block-causal models are forwarded only up to the current block, since
later blocks cannot influence it.

The forward sits behind a runner (`workbench.decoding.cache`: `reset` / `start_block` / `forward` / `end_block`),
the seam where a KV cache replaces the full recomputation without touching strategies. By default
`make_runner(model, config.cache)` picks it: the exact prefix cache for block-causal models, none otherwise.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence

import pluggy
import torch

from workbench.decoding.cache import CanvasRunner, check_shadow, make_runner
from workbench.models.base import Denoiser, noise_range
from workbench.decoding.registry import Hooks
from workbench.decoding.rng import BlockRandom, RowRandom
from workbench.decoding.state import FREE, BlockState, DecodeConfig, ModelInputsDenied, RowResult, Stash


def canvas_kind(model: Denoiser, config: DecodeConfig) -> str:
    """What open positions are fed in this decode: `mask` or `uniform` (see `DecodeConfig.noise`)."""
    native = getattr(model, "noise", None) or ("uniform" if model.mask_id is None else "mask")
    if config.noise == "auto":
        return native
    if config.noise == "mask" and model.mask_id is None:
        raise ModelInputsDenied(f"noise 'mask' asks for an absorbing-state canvas, but {type(model).__name__} has no "
                                f"mask token (a uniform-state model); decode with --noise uniform (or auto)")
    return config.noise


def predict(logits: torch.Tensor, temperature: float, rng: BlockRandom, rows: list[int],
            want_probs: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """top (n, L) long, conf (n, L) float32 and optionally probs (n, L, V) float32 from processed logits
    (n, L, V) in float32 or better (float64 models keep float64 until conf is stored). `rows`: the block rows
    the n logits belong to (their generators draw when a temperature samples `top`)."""
    probs = logits.softmax(-1)  # (n, L, V)
    if temperature > 0:
        tempered = (logits / temperature).softmax(-1)  # (n, L, V)
        top = rng.draw_multinomial(tempered, rows)
        conf = probs.gather(-1, top[..., None]).squeeze(-1)  # untempered p(top), as Fast-dLLM
    else:
        conf, top = probs.max(-1)
    return top, conf.float(), probs.float() if want_probs else None


def end_ids(model: Denoiser) -> tuple[int, ...]:
    """The ids that end a generation: `model.eos_ids` when a model has several (DiffusionGemma's generation
    config lists two), else `model.eos_id`."""
    return tuple(getattr(model, "eos_ids", None) or (model.eos_id,))


def cut_after_eos(ids: list[int], eos_id: int | Sequence[int]) -> list[int]:
    """ids up to and including the first EOS (any of `eos_id` when several): everything after counts as EOS."""
    ends = {eos_id} if isinstance(eos_id, int) else set(eos_id)
    first = next((i for i, t in enumerate(ids) if t in ends), None)
    return ids if first is None else ids[:first + 1]


def rows_into(previous: torch.Tensor | None, value: torch.Tensor, running: torch.Tensor) -> torch.Tensor:
    """`value` (b, ...) of the running rows written into the block's (B, ...) tensor, out of place (hooks may
    keep the previous one); zeros where no forward has written yet (rows done at block start)."""
    if previous is None:
        previous = value.new_zeros((running.shape[0], *value.shape[1:]))
    return previous.index_put((running,), value)


def guidance_runner(model: Denoiser, runner: CanvasRunner, uniform: bool) -> CanvasRunner:
    """The runner of guided blocks' unconditional forwards: the whole unconditional context every step
    (exact for every model kind, whatever cache the conditional forward uses). Refused for models that
    bring their own forward scheme (an encoder-decoder with self-conditioning)."""
    if callable(getattr(model, "make_runner", None)) or getattr(model, "self_conditioning", False):
        raise ModelInputsDenied(f"classifier-free guidance (a plugin's `guidance` answer) is not available for "
                                f"{type(model).__name__}, which brings its own forward scheme; decode without it "
                                f"(e.g. --set cfg_scale=0)")
    return CanvasRunner(getattr(runner, "model", model), uniform=uniform)


def fallback(state: BlockState, promoted: torch.Tensor) -> torch.Tensor:
    """Progress guarantee: rows with open positions that promoted nothing get their most confident one."""
    open_masks = state.open_masks
    need = promoted.any(-1, keepdim=True) < open_masks.any(-1, keepdim=True)  # (B, 1): none promoted, some open
    best = state.conf.where(open_masks, -1.0).argmax(-1, keepdim=True)  # (B, 1)
    return torch.zeros_like(promoted).scatter_(1, best, need)


@torch.no_grad()  # decoding never needs gradients; hooks run under no_grad too
def generate(model: Denoiser, prompts: Sequence[Sequence[int]], manager: pluggy.PluginManager,
             config: DecodeConfig, *, runner: CanvasRunner | None = None,
             sample_ids: Sequence[int] | None = None) -> list[RowResult]:
    """Decode a continuation of every prompt; returns one `RowResult` per prompt, in order.

    `sample_ids`: a stable id per prompt (default its index), seen by hooks as `state.sample_ids`; per-sample
    random generators are seeded from it, so a sample decodes alike in any batch (`DecodeConfig.rng`).
    """
    if not prompts:
        return []
    t0 = time.perf_counter()
    hooks = Hooks(manager)
    kind = canvas_kind(model, config)
    uniform = kind == "uniform"
    runner = runner or make_runner(model, config.cache, uniform=uniform)
    if hooks.needs_shadow:
        check_shadow(runner, hooks.needs_shadow)
    runner.reset()
    device = model.embedding_table().device
    n, p_len, g_len = len(prompts), max(len(p) for p in prompts), config.decoded_length
    sample_ids = list(range(n)) if sample_ids is None else [int(i) for i in sample_ids]
    if len(sample_ids) != n or len(set(sample_ids)) != n:
        raise ValueError(f"sample_ids must give {n} distinct ids, one per prompt; got {sample_ids}")
    sids = torch.tensor(sample_ids, device=device)
    rng = RowRandom(config.rng, config.seed, device)
    low, high = noise_range(model)
    ends = end_ids(model)
    ends_tensor = torch.tensor(ends, device=device)
    self_conditioning = bool(getattr(model, "self_conditioning", False))
    whole_batch = config.rng == "batch"  # see the forward below
    keep_logits = hooks.needs_logits or self_conditioning
    # WINO's shadow block (`workbench.decoding.cache`), returned after the block's logits in the same tensor.
    extras = {"shadow": True} if hooks.needs_shadow else {}
    # The canvas view: plugins that ask for it read every generated position's logits and may feed the
    # positions after the block, on runners whose forward computes them all (bidirectional, no cache).
    canvas_view = bool(hooks.canvas_readers) and bool(getattr(runner, "whole_canvas", False))

    # Canvas: left-padded prompts, then generated positions (open until committed).
    blank = model.mask_id if model.mask_id is not None else model.pad_id
    canvas = torch.full((n, p_len + g_len), blank, dtype=torch.long, device=device)  # (N, T)
    valid = torch.ones(n, p_len + g_len, dtype=torch.bool, device=device)
    for i, prompt in enumerate(prompts):
        pad = p_len - len(prompt)
        canvas[i, :pad], valid[i, :pad] = model.pad_id, False
        canvas[i, pad:p_len] = torch.tensor(list(prompt), dtype=torch.long)
    block_of = [0] * p_len + [1 + j // config.block_size for j in range(g_len)]
    block_ids = torch.tensor(block_of, device=device).expand(n, -1)  # (N, T)

    nfe = torch.zeros(n, dtype=torch.long)
    guided = torch.zeros(n, dtype=torch.long)  # unconditional forwards of classifier-free guidance, per row
    uncond_runner = None  # made on the first guided block
    # Context forwards: the prompt prefill counts as one even when it rides in block 1's first forward (the
    # DMax / Fast-dLLM convention), plus what a runner spends outside the refinement steps.
    context_forwards = torch.full((n,), 0 if runner.separate_prefill else 1, dtype=torch.long)
    alive = torch.ones(n, dtype=torch.bool)  # rows that have not yet produced EOS
    block_steps: list[list[int]] = [[] for _ in range(n)]
    decoded = [0] * n  # generated positions decoded per row
    seconds = [0.0] * n
    stash = Stash()
    total = p_len + g_len
    if canvas_view:
        runner.canvas_from = p_len

    for k, (start, end) in enumerate(config.block_spans(), start=1):
        rows = alive.nonzero().squeeze(1)  # (B,)
        if rows.numel() == 0:
            break
        lo, hi = p_len + start, p_len + end
        rows_d = rows.to(device)
        block_rng = rng.bind(sids[rows_d])
        open_ids = None
        if uniform:  # a fresh random canvas (DiffusionGemma: `initialize_canvas`)
            open_ids = block_rng.randint(low, high, end - start)  # (B, L)
            if not model.block_causal and hi < total:  # a bidirectional model sees the future as noise too
                canvas[rows_d, hi:] = block_rng.randint(low, high, total - hi)
        state = BlockState.start_block(block_index=k, start=start, rows=rows_d, length=end - start,
                                       cap=hooks.forward_cap(config, end - start),
                                       mask_id=model.mask_id, vocab_size=model.vocab_size, config=config,
                                       stash=stash, sample_ids=sids[rows_d], ids=open_ids, noise=kind,
                                       rng=block_rng, model=model, context=canvas[rows_d, :lo],
                                       context_valid=valid[rows_d, :lo], canvas_view=canvas_view)
        hooks.guard(state)
        fill = hooks.fill_block(state)  # (B, L) long or None
        if fill is not None:
            fixed = fill != FREE
            state.ids = torch.where(fixed, fill, state.ids)
            state.top = state.ids.clone()
            state.is_mask, state.active = ~fixed, ~fixed
        guide = hooks.guidance(state)  # Guidance or None
        # The all-False tensors of start_block, reused on the steps without revocation / without an opt-out.
        no_revocation, no_waiver = state.revoked, state.waived
        context_forwards[rows] += runner.start_block(canvas[rows_d], valid[rows_d], block_ids[rows_d], lo, hi)
        if guide is not None:  # the unconditional canvas: the guidance's context, then the block and after
            uncond_runner = uncond_runner or guidance_runner(model, runner, uniform)
            uncond_runner.start_block(torch.cat([guide.context, canvas[rows_d, lo:]], dim=1), valid[rows_d],
                                      block_ids[rows_d], lo, hi)
        n_running = state.batch_size  # rows still refining this block; the running set only shrinks
        if fill is not None and getattr(runner, "partial_first_forward", False):
            # A row whose every position fill_block fixed has nothing to decode: no forward (runners whose
            # block-start forward must carry every row run it once; it changes nothing).
            empty = ~state.active.any(-1)  # (B,)
            if bool(empty.any()):
                state.done = empty
                n_running -= int(empty.sum())
        all_rows = torch.ones_like(state.done)
        while n_running:
            everyone = n_running == state.batch_size  # a Python int: no host sync, no row indexing
            running = state.running  # (B,)
            block_rng.running = running
            embeds = hooks.embed_state(state, model)  # (B, L, D), or (B, L + after, D) with the canvas view
            extra = dict(extras)
            if embeds.shape[1] != state.length:  # the canvas view: inputs of the positions after the block too
                embeds, after = embeds[:, :state.length], embeds[:, state.length:]
                extra["after"] = after if everyone or whole_batch else after[running]
            if whole_batch and not everyone:
                # The batch stream keeps generate's shapes: every row of the block is forwarded (a finished
                # row's logits are dropped), so no row's numbers depend on which others finished.
                if self_conditioning:
                    extra["self_conditioning"] = state.logits
                logits = runner.forward(embeds, all_rows, **extra)[running]  # (b, L, V)
            else:
                if self_conditioning:  # the previous step's processed logits; none at a block's first step
                    extra["self_conditioning"] = None if state.step == 0 else (
                        state.logits if everyone else state.logits[running])
                logits = runner.forward(embeds if everyone else embeds[running], running, **extra)  # (b, L, V)
            if hooks.needs_shadow:  # [block ; shadow block] along the positions
                length = state.length
                shadow = logits[:, length:].to(torch.promote_types(logits.dtype, torch.float32))
                logits = logits[:, :length]
                state.shadow_logits = shadow if everyone else state.shadow_logits.index_put((running,), shadow)
            if guide is not None:  # classifier-free guidance of the block's logits: u + (w + 1)(c - u)
                if whole_batch and not everyone:  # the same rows as the conditional forward
                    uncond = uncond_runner.forward(embeds, all_rows)[running]
                else:
                    uncond = uncond_runner.forward(embeds if everyone else embeds[running], running)
                logits = uncond + (guide.scale + 1) * (logits - uncond)  # (b, L, V), the forward's dtype
            state.step += 1
            state.steps = state.steps + (1 if everyone else running.long())
            if canvas_view:  # the forward's logits at every generated position, before process_logits
                # reads the step (whole_batch: every row ran)
                seen = runner.canvas_logits.float()
                if not everyone:
                    seen = rows_into(state._canvas_logits, seen[running] if whole_batch else seen, running)
                state.canvas_logits = seen
            logits = hooks.process_logits(state, logits.to(torch.promote_types(logits.dtype, torch.float32)))
            drawing = []  # block rows whose generators draw `top` (only a temperature samples)
            if config.temperature > 0:
                drawing = list(range(n_running)) if everyone else running.nonzero().flatten().tolist()
            top, conf, probs = predict(logits, config.temperature, block_rng, drawing, hooks.needs_probs)
            state.prev_top = state.top if state.step > 1 else None
            if everyone:
                state.top, state.conf = top, conf
            else:  # out of place: hooks may have kept the previous tensors
                state.top = state.top.index_put((running,), top)
                state.conf = state.conf.index_put((running,), conf)
            if probs is not None:
                state.probs = probs if everyone else rows_into(state._probs, probs, running)
            if keep_logits:
                state.logits = logits if everyone else rows_into(state._logits, logits, running)

            revoked = hooks.revoke(state)  # (B, L) bool or None
            if revoked is None:
                state.revoked = no_revocation
            else:
                state.revoked = revoked
                state.is_mask = state.is_mask | revoked
                if not uniform:
                    state.ids = torch.where(revoked, model.mask_id, state.ids)
            positions, tokens, allow = hooks.promote(state)  # (B, L) bool, (B, L) long or None, fallback
            added = fallback(state, positions)
            if allow is True:
                state.waived = no_waiver
            else:  # the plugin opted out of the progress fallback (for some rows)
                state.waived = ~allow if isinstance(allow, torch.Tensor) else ~no_waiver
                added = added & ~state.waived[:, None]
            promoted = positions | added
            state.promoted, state.fallback = promoted, added
            chosen = state.top if tokens is None else torch.where(positions, tokens, state.top)
            state.ids = torch.where(promoted, chosen, state.ids)
            state.is_mask = state.is_mask & ~promoted
            if uniform:  # renoise: every open position of a drawing row gets a fresh random token
                noise = block_rng.randint(low, high, state.length)  # (B, L)
                state.ids = torch.where(state.is_mask & state.active & running[:, None], noise, state.ids)

            converged = hooks.converge(state)  # (B,)
            state.converged = converged if everyone else converged & running
            # Every running row has run every step of the block, so the forward cap is one Python test.
            state.finishing = running if state.step >= state.cap else state.converged
            finishing = int(state.finishing.sum())  # the step's one host sync the loop itself needs
            if finishing:
                committed = hooks.commit(state)  # (B, L)
                state.ids = torch.where(state.finishing[:, None], committed, state.ids)
                state.is_mask = state.is_mask & ~state.finishing[:, None]
                state.done = state.done | state.finishing
                n_running -= finishing
            hooks.on_step_end(state)

        nfe[rows] += state.steps.cpu()
        if guide is not None:  # one unconditional forward per counted step
            guided[rows] += state.steps.cpu()
        hooks.on_block_end(state, state.ids)
        canvas[rows_d, lo:hi] = state.ids
        now = time.perf_counter() - t0
        has_eos = torch.isin(state.ids, ends_tensor).any(-1).cpu()  # (B,)
        for i, row in enumerate(rows.tolist()):
            block_steps[row].append(int(state.steps[i]))
            decoded[row] = end
            seconds[row] = now
        alive[rows[has_eos]] = False  # a row stops after the block that contains its EOS
        runner.end_block(~has_eos)  # the runner drops the finished rows' cache

    results = []
    for i in range(n):
        ids = canvas[i, p_len:p_len + min(decoded[i], config.max_new_tokens)].tolist()  # last_block=full: cut
        ids = cut_after_eos(ids, ends)
        tokens = len(ids) - (1 if ids and ids[-1] in ends else 0)
        # Positions a strategy left masked (DMax's fill_at_cap=false, mask_logit=keep): reported, never hidden.
        unfilled = ids.count(model.mask_id) if model.mask_id is not None else 0
        extras = {"unfilled": unfilled} if unfilled else {}
        if guided[i]:  # the doubled compute of guidance, visible beside nfe (which counts a guided step once)
            extras["guidance_forwards"] = int(guided[i])
        if hooks.global_draws:  # not reproducible: said with every sample, never hidden
            extras["global_rng"] = sorted(f"{plugin}.{hook}" for plugin, hook in hooks.global_draws.items())
        results.append(RowResult(ids=ids, nfe=int(nfe[i]), tokens=tokens, seconds=seconds[i],
                                 block_steps=block_steps[i], prompt_len=len(prompts[i]),
                                 nfe_total=int(nfe[i] + context_forwards[i]), sample_id=sample_ids[i],
                                 extras=extras))
    if hooks.global_draws:
        warnings.warn(global_rng_message(hooks.global_draws), GlobalRandomWarning, stacklevel=2)
    hooks.on_generation_end(results)
    return results


class GlobalRandomWarning(UserWarning):
    """A plugin drew from torch's global random generator: its samples are not reproducible."""


def global_rng_message(draws: dict[str, str]) -> str:
    names = ", ".join(f"{plugin!r} (in {hook})" for plugin, hook in sorted(draws.items()))
    return (f"samples not reproducible: plugin {names} drew from torch's global random generator, so a sample "
            f"depends on its batch and on what ran before; draw from state.rng (one generator per sample) instead. "
            f"Each sample's extras name it (global_rng)")
