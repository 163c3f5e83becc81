"""Hypothesis properties of the decoding invariants (the checks live in `workbench.authoring.properties`)."""

from __future__ import annotations

import attrs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.embedders import hybrid
from workbench.authoring import properties as P
from workbench.decoding.registry import make_manager
from workbench.decoding.state import DecodeConfig

STRATEGIES = ("threshold", "hierarchical", "hard", "spd")
FIRST_TOKEN = 3  # ids 0-2 are PAD, MASK, EOS


@attrs.frozen
class Problem:
    model: P.ScriptedDenoiser
    prompts: list[list[int]]
    config: DecodeConfig
    tau: float


@st.composite
def problems(draw, max_batch=3) -> Problem:
    vocab = draw(st.integers(6, 20))
    block = draw(st.integers(1, 5))
    new = block * draw(st.integers(1, 3)) + draw(st.sampled_from([0, 0, 1]))  # sometimes a short last block
    model = P.ScriptedDenoiser(vocab, seed=draw(st.integers(0, 10_000)), scale=draw(st.floats(0.3, 8.0)),
                               eos_bias=draw(st.floats(-6.0, 2.0)), block_causal=draw(st.booleans()))
    token = st.integers(FIRST_TOKEN, vocab - 1)
    prompts = draw(st.lists(st.lists(token, min_size=1, max_size=5), min_size=1, max_size=max_batch))
    cap = draw(st.none() | st.integers(1, 2 * block))
    config = DecodeConfig(block_size=block, max_new_tokens=new, max_forwards_per_block=cap)
    return Problem(model, prompts, config, draw(st.floats(0.0, 1.0)))


def manager(strategy, **params):
    return lambda: make_manager(strategy, params=params)


@pytest.mark.parametrize("strategy", STRATEGIES)
@given(problem=problems())
def test_progress_within_cap_and_eos_stop(strategy, problem):
    trace = P.record(manager(strategy, tau=problem.tau), problem.model, problem.prompts, problem.config)
    P.check_progress(trace, problem.config)
    P.check_no_return_to_mask(trace)
    P.check_eos_stop(trace.results, problem.config)


@pytest.mark.parametrize("strategy", ["threshold", "hierarchical"])
@given(problem=problems())
def test_promoted_tokens_never_change(strategy, problem):
    config = attrs.evolve(problem.config, max_forwards_per_block=None)
    trace = P.record(manager(strategy, tau=problem.tau), problem.model, problem.prompts, config)
    P.check_tokens_final(trace)


@pytest.mark.parametrize("params", [{"rule": "threshold"}, {"rule": "factor", "factor": 1.0}])
@given(problem=problems())
def test_threshold_variants_keep_tokens_final(params, problem):
    trace = P.record(manager("threshold", **params), problem.model, problem.prompts, problem.config)
    P.check_tokens_final(trace)
    P.check_progress(trace, problem.config)


# margin 0: dInfer's rule also commits every position within `margin` of the best one (see test_threshold)
@pytest.mark.parametrize("strategy,params", [("threshold", {"tau": 1.0, "margin": 0.0}),
                                             ("hierarchical", {"threshold": 1.0, "low_threshold": 1.0})])
@given(problem=problems())
def test_tau_one_decodes_one_token_per_step(strategy, params, problem):
    config = attrs.evolve(problem.config, max_forwards_per_block=None)
    trace = P.record(manager(strategy, **params), problem.model, problem.prompts, config)
    P.check_one_token_per_step(trace)


@pytest.mark.parametrize("strategy", ["hard", "spd"])
@given(problem=problems())
def test_masks_stay_a_contiguous_suffix(strategy, problem):
    trace = P.record(manager(strategy, tau=problem.tau), problem.model, problem.prompts, problem.config)
    P.check_mask_suffix(trace)
    P.check_no_return_to_mask(trace)


@given(problem=problems())
def test_non_contiguous_hard_never_remasks(problem):
    trace = P.record(manager("hard", tau=problem.tau, contiguous=False), problem.model, problem.prompts,
                     problem.config)
    P.check_no_return_to_mask(trace)
    P.check_progress(trace, problem.config)


@given(seed=st.integers(0, 10_000), n=st.integers(1, 6), dim=st.integers(2, 16),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_hybrid_embedding_norm(seed, n, dim, dtype):
    g = torch.Generator().manual_seed(seed)
    e_top = (torch.randn(n, dim, generator=g) * torch.rand(n, 1, generator=g) * 3).to(dtype)
    e_mask = torch.randn(dim, generator=g).to(dtype)
    p = torch.rand(n, generator=g).to(dtype)
    P.check_hybrid_embedding(hybrid, e_top, e_mask, p)


@st.composite
def oracle_problems(draw):
    vocab = draw(st.integers(6, 16))
    block = draw(st.integers(1, 5))
    new = block * draw(st.integers(1, 3))
    sequence = draw(st.lists(st.integers(FIRST_TOKEN, vocab - 1) | st.just(P.EOS_ID), min_size=6 + new,
                             max_size=6 + new))
    prompt_lens = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
    oracle = P.OracleDenoiser(sequence, vocab, block_causal=draw(st.booleans()))
    return oracle, prompt_lens, DecodeConfig(block_size=block, max_new_tokens=new)


@pytest.mark.parametrize("strategy", STRATEGIES)
@given(case=oracle_problems(), tau=st.floats(0.0, 0.999))
def test_oracle_is_reproduced_in_one_forward_per_block(strategy, case, tau):
    """threshold / hierarchical: everything passes tau at the first forward and no mask is left;
    hard / spd: the contiguous run covers the block and every conf (1.0) >= tau_acc, so rule (b) ends
    the block without the confirmation forward rule (a) would need."""
    oracle, prompt_lens, config = case
    P.check_oracle(manager(strategy, tau=tau), oracle, prompt_lens, config, forwards_per_block=1)


@pytest.mark.parametrize("strategy", STRATEGIES)
@given(problem=problems())
def test_batch_invariance_scripted(strategy, problem):
    P.check_batch_invariance(manager(strategy, tau=problem.tau), problem.model, problem.prompts, problem.config)


@pytest.mark.parametrize("strategy", STRATEGIES)
@settings(max_examples=8)
@given(tau=st.floats(0.0, 1.0), prompts=st.lists(st.lists(st.integers(FIRST_TOKEN, 23), min_size=1, max_size=6),
                                                 min_size=2, max_size=3))
def test_batch_invariance_native_float64(strategy, tiny_model64, tau, prompts):
    config = DecodeConfig(block_size=3, max_new_tokens=6)
    P.check_batch_invariance(manager(strategy, tau=tau), tiny_model64, prompts, config)


@pytest.mark.parametrize("strategy", STRATEGIES)
@given(problem=problems(), temperature=st.sampled_from([0.0, 0.7, 1.5]), seed=st.integers(0, 2**31))
def test_determinism_and_prompt_untouched(strategy, problem, temperature, seed):
    config = attrs.evolve(problem.config, temperature=temperature, seed=seed)
    P.check_determinism(manager(strategy, tau=problem.tau), problem.model, problem.prompts, config)
    P.check_prompt_unmodified(manager(strategy, tau=problem.tau), problem.model, problem.prompts, config)


def test_determinism_native_with_temperature(tiny_model):
    config = DecodeConfig(block_size=4, max_new_tokens=8, temperature=1.0, seed=3)
    for strategy in STRATEGIES:
        P.check_determinism(manager(strategy), tiny_model, [[5, 6, 7], [8]], config)


def test_check_plugin_accepts_builtins_and_a_user_plugin():
    from plugins.promotion import leftmost
    from workbench.decoding.registry import hookimpl

    class LeftmostOnly:
        @hookimpl
        def promote(self, state):
            return leftmost(state)

    for strategy in STRATEGIES:
        P.check_plugin(manager(strategy), seeds=(0,))
    P.check_plugin(lambda: make_manager("spd", extra_plugins=[LeftmostOnly()]), seeds=(0,))


def test_check_plugin_catches_a_batch_dependent_plugin():
    from workbench.decoding.registry import hookimpl

    class BatchDependent:
        @hookimpl
        def promote(self, state):
            return state.open_masks & (state.conf >= (0.0 if state.batch_size > 1 else 1.0))

    with pytest.raises(AssertionError, match="batched"):
        P.check_plugin(lambda: make_manager("threshold", extra_plugins=[BatchDependent()]), seeds=(0,))
