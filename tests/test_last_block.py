"""`DecodeConfig.last_block` (issue 21, item 3): when `max_new_tokens` is not a multiple of the block, `full`
decodes a whole last block, as every other, and cuts each row's output to `max_new_tokens`; `short` (the
default) decodes only the remaining positions. A core setting: every built-in strategy runs under both.
DiffusionGemma's parity with transformers' `generate` under `full` is in tests/test_diffusion_gemma.py."""

from __future__ import annotations

import attrs
import pytest

from workbench import hookimpl
from workbench.decoding.catalog import BUILTIN_STRATEGIES
from workbench.decoding.loop import generate
from workbench.decoding.registry import make_manager
from workbench.decoding.state import DecodeConfig

PARAMS = {"uniform-eb": {"max_denoising_steps": 4}}
# Strategies whose draws span the whole generated canvas (LLaDA's Gumbel noise and random remasking, Dream's
# ranking).
CANVAS_WIDE = [("eb", {"temperature": 0.7}), ("pc-sampler", {"temperature": 0.7}),
               ("dream", {"alg": "maskgit_plus", "alg_temp": 0.5}), ("llada", {"temperature": 0.7}),
               ("llada", {"remasking": "random"})]


class BlockLengths:
    def __init__(self):
        self.lengths = []

    @hookimpl
    def on_block_end(self, state, committed):
        self.lengths.append(committed.shape[1])


def test_decoded_length_and_spans():
    config = DecodeConfig(block_size=4, max_new_tokens=10)
    assert config.decoded_length == 10 and config.block_spans() == [(0, 4), (4, 8), (8, 10)]
    full = attrs.evolve(config, last_block="full")
    assert full.decoded_length == 12 and full.block_spans() == [(0, 4), (4, 8), (8, 12)]
    assert attrs.evolve(full, max_new_tokens=8).decoded_length == 8  # no remainder: the same decode


@pytest.mark.parametrize("strategy,params", [(name, PARAMS.get(name, {})) for name, _ in BUILTIN_STRATEGIES]
                         + CANVAS_WIDE, ids=lambda v: v if isinstance(v, str) else "")
def test_every_builtin_strategy_decodes_a_whole_last_block_and_the_output_is_cut(tiny_model, strategy, params):
    """The last block holds 4 positions under `full`, 2 under `short`, and the output stops at 10. On a
    block-causal model the blocks before the last compute the same in both modes (per-sample streams), so
    the first 8 ids agree, except for draws that span the whole generated canvas, which is longer."""
    prompts = [[5, 6, 7], [8, 9]]
    short = DecodeConfig(block_size=4, max_new_tokens=10, max_forwards_per_block=4,
                         noise="uniform" if strategy == "uniform-eb" else "auto")  # a uniform-state sampler
    seen, results = {}, {}
    for mode in ("short", "full"):
        lengths = BlockLengths()
        manager = make_manager(strategy, params=params, extra_plugins=[lengths])
        results[mode] = generate(tiny_model, prompts, manager, attrs.evolve(short, last_block=mode))
        seen[mode] = lengths.lengths
    assert all(len(r.ids) <= 10 for r in results["full"])
    if len(seen["full"]) == 3:  # some row reached the last block
        assert seen["full"][-1] == 4 and seen["short"][-1] == 2
    if (strategy, params) not in CANVAS_WIDE:
        for a, b in zip(results["short"], results["full"]):
            assert a.ids[:8] == b.ids[:8] and a.block_steps[:2] == b.block_steps[:2]


@pytest.mark.parametrize("strategy,params", [("iter-smooth", {}), ("klass", {}), ("prophet", {"answer_start": 0})],
                         ids=["iter-smooth", "klass", "prophet"])
def test_the_canvas_view_spans_the_decoded_canvas(strategy, params):
    """On a bidirectional model decoded without a cache the canvas view covers every decoded position: 12
    under `full` (the last block whole), of which 10 are returned."""
    from workbench.models.native import build_random_model

    model = build_random_model(24, seed=0, hidden_size=32, num_layers=2, num_heads=2, block_causal=False)
    widths = []

    class Width:
        @hookimpl
        def on_step_end(self, state):
            widths.append(state.canvas_logits.shape[1] if state.canvas_view else None)

    config = DecodeConfig(block_size=4, max_new_tokens=10, last_block="full")
    results = generate(model, [[5, 6, 7], [8, 9]], make_manager(strategy, params=params, extra_plugins=[Width()]),
                       config)
    assert set(widths) == {12} and all(len(r.ids) <= 10 for r in results)
