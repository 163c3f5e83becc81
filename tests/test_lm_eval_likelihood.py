"""The Monte-Carlo ELBO behind the lm-eval model's `loglikelihood` (workbench/harness/likelihood.py).

Needs no lm-eval. Real tiny native models of both attention layouts; the reference values are computed in
the test: the exact expectation of the estimator by enumerating every (l, masked set), and the greedy
continuation decoded by the real loop (`workbench.decoding.loop.generate`). LLaDA's own estimator
(`mc_scheme=llada`) is checked against golden numbers its published function gave on a tiny model
(`tests/reference/llada_likelihood/`, recorded by `benchmarks/reference/record_llada_likelihood.py`). The
uniform-state check uses a stand-in object (a fake: no such model ships yet).
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tests.conftest import TINY
from transcripts import model_of
from workbench.harness.likelihood import (
    LikelihoodUndefinedError, check_scheme, elbo, is_greedy, likelihood_undefined_reason, require_masked_diffusion,
)
from workbench.decoding.loop import generate
from workbench.models.native import build_random_model
from workbench.decoding.registry import hookimpl, make_manager
from workbench.decoding.state import DecodeConfig

# Ids of real tokens of the tiny models (vocab 24; 0-3 are PAD, MASK, EOS, UNK).
CONTEXT = [5, 9, 4, 12, 7]


@pytest.fixture(scope="module", params=[True, False], ids=["block_causal", "bidirectional"])
def model(request):
    return build_random_model(24, seed=3, dtype=torch.float64, **TINY, block_causal=request.param)


@torch.no_grad()
def _logp(model, ids: list[int], prompt_len: int, block_size: int | None) -> torch.Tensor:
    """(L, V) log-probabilities at the continuation positions of one row (the reference's own forward)."""
    t = len(ids)
    blocks = [0] * prompt_len + [1 + (j // block_size if block_size else 0) for j in range(t - prompt_len)]
    out = model.denoise(model.embedding_table()[torch.tensor([ids])], block_ids=torch.tensor([blocks]),
                        valid=torch.ones(1, t, dtype=torch.bool))
    return out[0, prompt_len:].double().log_softmax(-1)


def exact_expectation(model, context, continuation, block_size) -> float:
    """E[estimate] by enumeration: per block, l uniform on 1..L, the masked set uniform among the l-subsets."""
    p, total = len(context), 0.0
    spans = [(0, len(continuation))] if block_size is None else [
        (s, min(s + block_size, len(continuation))) for s in range(0, len(continuation), block_size)]
    for lo, hi in spans:
        length = hi - lo
        for l in range(1, length + 1):
            subsets = list(itertools.combinations(range(length), l))
            for subset in subsets:
                ids = list(context) + list(continuation[:hi])
                for j in subset:
                    ids[p + lo + j] = model.mask_id
                logp = _logp(model, ids, p, block_size)
                nll = -sum(float(logp[lo + j, continuation[lo + j]]) for j in subset)
                total += (1 / length) * (1 / len(subsets)) * (length / l) * nll
    return -total


def block_of(model):
    return 2 if model.block_causal else None


def test_one_token_continuation_is_exact(model):
    target = 11
    ids = CONTEXT + [model.mask_id]
    exact = float(_logp(model, ids, len(CONTEXT), block_of(model))[0, target])
    for samples in (1, 5):
        assert elbo(model, CONTEXT, [target], samples=samples, block_size=block_of(model)) == pytest.approx(exact)


def test_estimate_converges_to_the_enumerated_expectation(model):
    continuation = [6, 14, 8]  # three positions: two blocks of 2 on the block-causal model
    exact = exact_expectation(model, CONTEXT, continuation, block_of(model))
    estimate = elbo(model, CONTEXT, continuation, samples=3000, batch_size=500, block_size=block_of(model))
    # Per-sample values spread by ~1 nat here, so 3000 samples put the mean within ~0.03 of its expectation.
    assert estimate == pytest.approx(exact, abs=0.12)
    assert estimate < 0


def test_value_depends_on_the_seed_only(model):
    continuation = [6, 14, 8, 10]
    kwargs = dict(samples=24, block_size=block_of(model))
    first = elbo(model, CONTEXT, continuation, batch_size=24, **kwargs)
    assert elbo(model, CONTEXT, continuation, batch_size=5, **kwargs) == pytest.approx(first, rel=1e-9)
    assert elbo(model, CONTEXT, continuation, batch_size=24, seed=1, **kwargs) != first
    assert elbo(model, CONTEXT, [], **kwargs) == 0.0


class MostConfidentOnly:
    """Promotes the one most confident open position of each row per step: greedy one-by-one decoding."""

    @hookimpl
    def promote(self, state):
        open_ = state.open_masks  # (B, L)
        best = state.conf.where(open_, -1.0).argmax(-1, keepdim=True)  # (B, 1)
        return torch.zeros_like(open_).scatter_(1, best, open_.any(-1, keepdim=True))


def test_is_greedy_agrees_with_one_by_one_decoding_in_the_loop(model):
    """The real loop decoding one most confident position per forward gives the greedy continuation, which
    `is_greedy` must recognise, and no other."""
    manager = make_manager("threshold", named_plugins=[("one-by-one", MostConfidentOnly())])
    checked = 0
    for shift in range(8):
        prompt = [(t + shift) % 19 + 4 for t in CONTEXT]
        length = 4
        config = DecodeConfig(block_size=block_of(model) or length, max_new_tokens=length)
        ids = generate(model, [prompt], manager, config)[0].ids
        if model.eos_id in ids:
            continue  # cut after EOS: not the whole greedy continuation
        checked += 1
        assert is_greedy(model, prompt, ids, block_size=block_of(model))
        wrong = list(ids)
        wrong[-1] = 4 + (wrong[-1] - 3) % 19  # another real token
        assert not is_greedy(model, prompt, wrong, block_size=block_of(model))
    assert checked >= 3


def test_undefined_for_uniform_state_models_and_models_without_a_mask():
    masked = SimpleNamespace(mask_id=1, config=SimpleNamespace())
    assert likelihood_undefined_reason(masked) is None
    for fake in (SimpleNamespace(mask_id=None), SimpleNamespace(mask_id=1, noise="uniform"),
                 SimpleNamespace(mask_id=1, config=SimpleNamespace(noise="uniform"))):
        with pytest.raises(LikelihoodUndefinedError, match=r"'loglikelihood'.*model my-uniform-model"):
            require_masked_diffusion(fake, "my-uniform-model", "loglikelihood")


def test_probabilities_of_all_one_token_continuations_sum_to_one(model):
    """For L = 1 the estimate is exact, so exp(value) over the vocabulary is the model's distribution."""
    total = sum(math.exp(elbo(model, CONTEXT, [t], samples=1, block_size=block_of(model)))
                for t in range(model.vocab_size))
    assert total == pytest.approx(1.0, abs=1e-9)


# -- LLaDA's estimator (mc_scheme=llada) -----------------------------------------------------------------------

GOLDEN = Path(__file__).resolve().parent / "reference" / "llada_likelihood" / "get_log_likelihood.json"


def golden() -> dict:
    return dict(json.loads(GOLDEN.read_text()), path=str(GOLDEN))


@pytest.mark.parametrize("case", golden()["cases"], ids=lambda c: c["name"])
def test_llada_scheme_gives_lladas_own_value(case):
    """Seeded as LLaDA's run was (`torch.manual_seed(s)` before its `get_log_likelihood`), the workbench draws
    the same counts and positions and returns the same number."""
    record = golden()
    model = model_of(record)
    for seed, expected in zip(case["seeds"], case["values"]):
        value = elbo(model, case["prompt"], case["answer"], samples=case["mc_num"], batch_size=case["batch_size"],
                     scheme="llada", generator=torch.Generator().manual_seed(seed))
        assert value == pytest.approx(expected, abs=2e-4), f"seed {seed}"


def llada_counts(length: int, batch: int, k: int) -> list[int]:
    """LLaDA's mask counts for a batch whose draw is k, written out: k, k + L/b, k + 2L/b, ... rounded half to
    even, then wrapped into 1..L (the test's own reading of its `forward_process`)."""
    counts = []
    for i in range(batch):
        value = k + i * length / batch
        rounded = round(value)  # Python's round is half to even, as torch.round
        counts.append((rounded - 1) % length + 1)
    return counts


def test_llada_scheme_expectation_differs_from_the_elbo():
    """Enumerated exactly on the golden model (L = 8): the iid scheme's expectation is the ELBO, LLaDA's is
    off by the weight its rounded linspace gives each count; both as the recorder wrote them."""
    record = golden()
    model = model_of(record)
    stats = {s["name"]: s for s in record["statistics"]}
    case = next(c for c in record["cases"] if c["name"] == "L8_batch16")
    prompt, answer, batch = case["prompt"], case["answer"], case["batch_size"]
    length = len(answer)
    # e_l: mean summed cross-entropy over every l-subset (the test's own forward).
    e = {}
    for count in range(1, length + 1):
        total = []
        for subset in itertools.combinations(range(length), count):
            ids = prompt + [model.mask_id if j in subset else t for j, t in enumerate(answer)]
            logp = _logp(model, ids, len(prompt), None)
            total.append(-sum(float(logp[j, answer[j]]) for j in subset))
        e[count] = sum(total) / len(total)
    exact_iid = -sum(length / c * e[c] for c in e) / length
    exact_llada = -sum(sum(length / c * e[c] for c in llada_counts(length, batch, k)) / batch
                       for k in range(1, length + 1)) / length
    assert exact_iid == pytest.approx(stats["L8_batch16"]["exact_iid"], abs=1e-3)
    assert exact_llada == pytest.approx(stats["L8_batch16"]["exact_llada"], abs=1e-3)
    assert abs(exact_llada - exact_iid) > 0.1  # the bias the docs state
    # The counts LLaDA spreads over a batch of 16 at L = 8 are not uniform: even counts three times as often.
    hist = [sum(llada_counts(length, batch, k).count(c) for k in range(1, length + 1)) for c in range(1, length + 1)]
    assert hist == [8, 24, 8, 24, 8, 24, 8, 24]


def test_llada_scheme_needs_whole_batches_and_iid_stays_the_default(model):
    with pytest.raises(ValueError, match=r"mc_samples \(20\) must be a multiple of mc_batch_size \(8\)"):
        check_scheme("llada", 20, 8)
    with pytest.raises(ValueError, match=r"mc_scheme='nope'"):
        elbo(model, CONTEXT, [6, 14], scheme="nope")
    continuation = [6, 14, 8, 10]
    assert elbo(model, CONTEXT, continuation, samples=8, block_size=block_of(model)) == \
        elbo(model, CONTEXT, continuation, samples=8, block_size=block_of(model), scheme="iid")
    # The llada scheme on a block-causal model: each block its own spread counts, a finite estimate.
    value = elbo(model, CONTEXT, continuation, samples=8, batch_size=4, block_size=block_of(model), scheme="llada")
    assert math.isfinite(value) and value < 0
