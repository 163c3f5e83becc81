"""Batched decoding: prompts of different lengths (left padding) and rows that finish at different times
decode exactly as each row alone, with and without the KV cache."""

from __future__ import annotations

import pytest
import torch

from workbench.decoding.loop import generate
from workbench.models.native import build_random_model
from workbench.decoding.registry import hookimpl, make_manager
from workbench.decoding.state import DecodeConfig

STRATEGIES = ("threshold", "hierarchical", "hard", "spd")
PROMPTS = [[5, 6, 7], [9], [10, 11, 12, 13, 14], [3, 4], [7, 7, 8, 9, 20, 21, 22]]


def peaky_model(block_causal=True, seed=4):
    """Float64 and confident enough that rows finish blocks at different steps and stop (EOS) after
    different blocks."""
    return build_random_model(24, seed=seed, dtype=torch.float64, hidden_size=32, num_layers=2, num_heads=2,
                              initializer_range=0.4, block_causal=block_causal)


def manager(strategy, tau=0.5, extra=()):
    key = "threshold" if strategy == "hierarchical" else "tau"
    return make_manager(strategy, params={key: tau}, extra_plugins=list(extra))


def summary(results):
    return [(r.ids, r.nfe, r.block_steps, r.tokens) for r in results]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("block_causal,cache", [(True, "auto"), (True, "none"), (False, "none")])
def test_batch_with_early_finishers_equals_row_by_row(strategy, block_causal, cache):
    model = peaky_model(block_causal)
    config = DecodeConfig(block_size=4, max_new_tokens=16, cache=cache)
    batch = generate(model, PROMPTS, manager(strategy), config)
    alone = [generate(model, [p], manager(strategy), DecodeConfig(block_size=4, max_new_tokens=16, cache="none"))[0]
             for p in PROMPTS]
    assert summary(batch) == summary(alone)


def test_rows_really_finish_at_different_times():
    results = generate(peaky_model(), PROMPTS, manager("threshold"), DecodeConfig(block_size=4, max_new_tokens=16))
    assert len({len(r.block_steps) for r in results}) > 1  # EOS in different blocks
    assert any(len(set(steps)) > 1 for steps in zip(*[r.block_steps for r in results]))  # within a block


def test_a_row_stalled_to_the_cap_leaves_the_others_untouched():
    """Row 0 never converges (cap), the others converge at once: the cached batch keeps forwarding row 0
    alone against its share of the cache and everyone still decodes as alone."""

    class Stall:
        """Converges every row at once except prompt `row` (never: the cap ends its blocks)."""

        def __init__(self, row):
            self.row = row

        @hookimpl
        def converge(self, state):
            return state.rows != self.row

    model = peaky_model()
    config = DecodeConfig(block_size=4, max_new_tokens=12, max_forwards_per_block=6)
    batch = generate(model, PROMPTS, manager("spd", extra=[Stall(0)]), config)
    assert batch[0].block_steps[0] == 6 and batch[1].block_steps[0] < 6
    alone_config = DecodeConfig(block_size=4, max_new_tokens=12, max_forwards_per_block=6, cache="none")
    alone = [generate(model, [p], manager("spd", extra=[Stall(0 if i == 0 else -1)]), alone_config)[0]
             for i, p in enumerate(PROMPTS)]  # alone every prompt is row 0: stall only the first one
    assert summary(batch) == summary(alone)


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_approximate_caches_are_batch_invariant(mode):
    """Fast-dLLM caches change tokens relative to no cache, but not between batched and alone."""
    model = peaky_model(block_causal=False)
    config = DecodeConfig(block_size=4, max_new_tokens=12, cache=mode)
    batch = generate(model, PROMPTS, manager("threshold"), config)
    assert summary(batch) == summary([generate(model, [p], manager("threshold"), config)[0] for p in PROMPTS])
