"""Log-likelihood of a continuation under a masked diffusion model: the Monte-Carlo ELBO (LLaDA's estimator).

Called by `workbench.harness.lm_eval_model.WorkbenchLM` for lm-eval's `loglikelihood` (multiple-choice tasks)
and `loglikelihood_rolling` requests; it needs no lm-eval itself.

A masked diffusion model has no exact likelihood, only the evidence lower bound (LLaDA eq. 3 / its lm-eval
model): for each of M samples draw l ~ U{1..L} (L = continuation length), mask l continuation positions
chosen uniformly at random, forward once and sum the cross-entropy at the masked positions, scaled by L / l;
the estimate of -log p(continuation | context) is the mean over the M samples. Only continuation positions
are ever masked; the context stays clean. For L = 1 every sample is the same single forward, so the value is
exact. `is_greedy` is LLaDA's check too: decoding the fully masked continuation one position per forward,
most confident position first, reproduces it exactly.

Block-causal models (LLaDA-2.0 / BD3-LM layout) are scored in the layout they were trained in: the
continuation is cut into blocks of `block_size` after the context (block 0), and the ELBO is the sum over
blocks of each block's estimate with the earlier blocks clean (the chain rule over blocks, BD3-LM's bound).
Bidirectional models score the whole continuation as one block, exactly as above.

Two ways to draw the mask counts (`scheme`):
- `iid` (default): every sample draws its own l ~ U{1..L}, so the mean is an unbiased estimate of the ELBO;
- `llada`: LLaDA's published estimator (`get_log_likelihood.py` / `eval_llada.py`, `forward_process`), which
  spreads the counts of each batch of `batch_size` samples evenly: k ~ U{1..L} once per batch, then
  l_i = round(linspace(k, k + (b - 1) L / b, b)), wrapped into 1..L, and each row's positions from its own
  random permutation. The spread of the estimate is smaller, but the counts are not uniform (linspace steps
  of L / b rounded half to even favour some counts), so its expectation is not the ELBO's, and the value
  depends on the batch size. It is here to reproduce published numbers; drawn from the same generator in the
  same order, it gives LLaDA's own function's value (`tests/test_lm_eval_likelihood.py`, golden numbers
  recorded by `benchmarks/reference/record_llada_likelihood.py`).

Randomness: every request gets its own CPU generator seeded from (seed, context ids, continuation ids), so a
request's value does not depend on which other requests share the run or in what order they come.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

# LLaDA's lm-eval model: mc_num=128 samples, 32 per forward on its GPU.
DEFAULT_SAMPLES = 128
DEFAULT_BATCH = 32
SCHEMES = ("iid", "llada")  # how the mask counts of the M samples are drawn (module docstring)


class LikelihoodUndefinedError(ValueError):
    """The model is not a masked diffusion model, so the masked ELBO does not estimate its likelihood."""


def likelihood_undefined_reason(model) -> str | None:
    """Why the masked-diffusion ELBO does not apply to `model`, or None when it does.

    Uniform-state models (noise "uniform") corrupt tokens into other tokens, not into a mask, and a model
    without a mask token has no masked positions to score.
    """
    if getattr(model, "mask_id", None) is None:
        return "it has no mask token"
    noise = getattr(model, "noise", None) or getattr(getattr(model, "config", None), "noise", None)
    if noise == "uniform":
        return "it is a uniform-state diffusion model (noise='uniform'), not a masked one"
    return None


def require_masked_diffusion(model, model_name: str, request_type: str) -> None:
    """Raise `LikelihoodUndefinedError` naming the model and the request type when the ELBO does not apply."""
    reason = likelihood_undefined_reason(model)
    if reason is not None:
        raise LikelihoodUndefinedError(
            f"lm-eval request type {request_type!r} is undefined for model {model_name}: {reason}, so the "
            f"masked-diffusion ELBO does not estimate its likelihood. Evaluate it with generate_until tasks "
            f"(e.g. gsm8k) instead of multiple-choice / perplexity tasks.")


def request_seed(seed: int, context: Sequence[int], continuation: Sequence[int]) -> int:
    """A 63-bit seed that depends only on the run's seed and the request's token ids."""
    text = f"{seed}|{','.join(map(str, context))}|{','.join(map(str, continuation))}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def _spans(length: int, block_size: int | None) -> list[tuple[int, int]]:
    """Continuation offsets scored together: one span (bidirectional), or blocks of `block_size`."""
    if block_size is None:
        return [(0, length)]
    return [(s, min(s + block_size, length)) for s in range(0, length, block_size)]


def _canvas(model, ids: torch.Tensor, prompt_len: int, block_size: int | None):
    """(embeddings, block_ids, valid) of a batch of unpadded rows ids (B, T): prompt block 0, then blocks."""
    b, t = ids.shape
    device = ids.device
    offsets = torch.arange(t - prompt_len, device=device)
    cont_blocks = 1 + (offsets // block_size if block_size is not None else torch.zeros_like(offsets))
    block_ids = torch.cat([torch.zeros(prompt_len, dtype=torch.long, device=device), cont_blocks]).expand(b, -1)
    valid = torch.ones(b, t, dtype=torch.bool, device=device)
    return model.embedding_table()[ids], block_ids, valid  # (B, T, D), (B, T), (B, T)


def _logprobs(model, ids: torch.Tensor, prompt_len: int, block_size: int | None) -> torch.Tensor:
    """Log-probabilities (B, T - prompt_len, V) float32 at the continuation positions of ids (B, T)."""
    embeds, block_ids, valid = _canvas(model, ids, prompt_len, block_size)
    logits = model.denoise(embeds, block_ids=block_ids, valid=valid)[:, prompt_len:]  # (B, L, V)
    # float32 or better: the training loss is a float32 cross-entropy over all logits (mask logit included).
    return logits.to(torch.promote_types(logits.dtype, torch.float32)).log_softmax(-1)


def _iid_masks(length: int, samples: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked (M, L) bool, counts (M,)): l ~ U{1..L} per sample, l positions uniformly at random."""
    # All M draws first, so the value does not depend on how many samples share a forward.
    counts = torch.randint(1, length + 1, (samples,), generator=gen)  # l ~ U{1..L}, (M,)
    # l random positions per sample: the positions whose rank in a random permutation is below l.
    ranks = torch.rand(samples, length, generator=gen).argsort(-1).argsort(-1)  # (M, L)
    return ranks < counts[:, None], counts  # exactly l per row


def _llada_masks(length: int, samples: int, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked (M, L) bool, counts (M,)) as LLaDA's `forward_process` draws them, batch after batch.

    The same calls in the same order as LLaDA's code (`torch.randint` for k, then one `torch.randperm` per
    row), on the CPU, so a generator seeded like LLaDA's `torch.manual_seed(s)` reproduces its draws exactly."""
    masks, counts = [], []
    for _ in range(samples // batch):
        k = torch.randint(1, length + 1, (), generator=gen)
        # Evenly spread counts, as LLaDA writes it (float32 linspace, round half to even, then wrapped).
        x = torch.round(torch.linspace(float(k), k + (batch - 1) * (length / batch), steps=batch)).long()
        x = ((x - 1) % length) + 1  # (b,) in 1..L
        first = torch.arange(length).repeat(batch, 1) < x[:, None]  # (b, L): the first x_i positions
        masks += [first[i][torch.randperm(length, generator=gen)] for i in range(batch)]
        counts.append(x)
    return torch.stack(masks), torch.cat(counts)


def check_scheme(scheme: str, samples: int, batch_size: int) -> None:
    """ValueError unless `scheme` is known and, for `llada`, `samples` is a whole number of batches."""
    if scheme not in SCHEMES:
        raise ValueError(f"mc_scheme={scheme!r}: choose one of {', '.join(SCHEMES)}")
    if samples < 1 or batch_size < 1:
        raise ValueError(f"mc_samples ({samples}) and mc_batch_size ({batch_size}) must be positive")
    if scheme == "llada" and samples % batch_size:
        raise ValueError(f"mc_scheme=llada: it spreads the mask counts over each batch of mc_batch_size samples, "
                         f"so mc_samples ({samples}) must be a multiple of mc_batch_size ({batch_size}), as LLaDA "
                         f"asserts")


@torch.no_grad()
def elbo(model, context: Sequence[int], continuation: Sequence[int], *, samples: int = DEFAULT_SAMPLES,
         batch_size: int = DEFAULT_BATCH, block_size: int | None = None, seed: int = 0, scheme: str = "iid",
         generator: torch.Generator | None = None) -> float:
    """Monte-Carlo ELBO of log p(continuation | context): a lower bound estimate, in nats (<= 0 up to noise).

    `block_size` is the block length of a block-causal model (None for bidirectional ones: one span).
    `samples` forwards per span (M), `batch_size` of them per model call. `scheme`: how the mask counts are
    drawn (`iid` or `llada`, module docstring). `generator`: a CPU generator to draw from instead of the
    request's own one seeded from `seed` (replaying a reference run).
    """
    check_scheme(scheme, samples, batch_size)
    if not continuation:
        return 0.0
    device = model.embedding_table().device
    gen = generator if generator is not None else torch.Generator().manual_seed(
        request_seed(seed, context, continuation))
    full = torch.tensor([*context, *continuation], dtype=torch.long)
    p = len(context)
    total = 0.0
    for lo, hi in _spans(len(continuation), block_size):
        length = hi - lo
        # Block-causal: positions after the span are invisible to it, so the canvas ends at the span.
        row = full[: p + hi]
        target = row[p + lo:].to(device)  # (length,)
        all_masked, counts = (_iid_masks(length, samples, gen) if scheme == "iid"
                              else _llada_masks(length, samples, batch_size, gen))  # (M, L) bool, (M,)
        span_sum = 0.0
        for start in range(0, samples, batch_size):
            masked, count = all_masked[start:start + batch_size], counts[start:start + batch_size]  # (b, L), (b,)
            b = masked.shape[0]
            ids = row.expand(b, -1).clone()
            ids[:, p + lo:].masked_fill_(masked, model.mask_id)  # a view: masks the span in place
            logp = _logprobs(model, ids.to(device), p, block_size)[:, lo:]  # (b, L, V)
            nll = -logp.gather(-1, target.expand(b, -1)[..., None]).squeeze(-1)  # (b, L)
            per_sample = (nll * masked.to(device)).sum(-1) * (length / count.to(device))  # scaled by L / l
            span_sum += float(per_sample.sum())
        total += span_sum / samples
    return -total


@torch.no_grad()
def is_greedy(model, context: Sequence[int], continuation: Sequence[int], *, block_size: int | None = None) -> bool:
    """True when confidence-ordered greedy decoding (one position per forward) yields `continuation` exactly.

    Stops at the first committed token that differs (LLaDA's `suffix_greedy_prediction`), so a wrong
    continuation usually costs one forward.
    """
    if not continuation:
        return True
    device = model.embedding_table().device
    p = len(context)
    ids = torch.tensor([[*context, *continuation]], dtype=torch.long, device=device)  # (1, T)
    target = ids[0, p:].clone()
    ids[0, p:] = model.mask_id
    for lo, hi in _spans(len(continuation), block_size):
        for _ in range(hi - lo):
            logp = _logprobs(model, ids[:, : p + hi], p, block_size)[0, lo:hi]  # (L, V)
            logp[:, model.mask_id] = float("-inf")  # decoding never commits MASK (as `loop.predict`)
            conf, top = logp.max(-1)
            open_ = ids[0, p + lo: p + hi] == model.mask_id
            pos = int(conf.where(open_, float("-inf")).argmax())
            if int(top[pos]) != int(target[lo + pos]):
                return False
            ids[0, p + lo + pos] = top[pos]
    return True
