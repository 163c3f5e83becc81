"""iter-smooth: dInfer's iteration smoothing (IterSmoothDiffusionLLM with its threshold decoder)."""

from __future__ import annotations

import json

import pytest
import torch
from transcripts import cases, check_case

from workbench import DecodeConfig, check_invariants, generate, hookimpl, make_manager
from workbench.authoring.properties import ScriptedDenoiser, make_block_state
from workbench.cli import main as cli
from strategies.iter_smooth import STRATEGY


@pytest.mark.parametrize("transcript, case", cases("iter-smooth"))
def test_matches_dinfer(transcript, case):
    check_case(transcript, case)


def plugin(**params):
    return make_manager("iter-smooth", params=params).get_plugin("iter-smooth")


def test_defaults_and_schedules():
    p = plugin()
    assert (p.tau, p.cont_weight, p.cont_weight_init, p.cont_weight_growth, p.threshold_decay) == \
        (0.9, 0.3, 0.15, 0.02, 0.02)
    assert plugin(tau=0.5).tau == 0.5
    assert [p.weight(n) for n in (0, 5, 7, 8, 20)] == pytest.approx([0.15, 0.25, 0.29, 0.3, 0.3])
    assert [p.threshold(n) for n in (0, 3, 5, 6)] == pytest.approx([1.0, 0.94, 0.9, 0.9])


def test_smoothed_inputs_on_a_hand_computed_step():
    """After one forward (n = 0): open positions read e_mask + 0.15 * softmax(logits) @ E, tokens E(id)."""
    model = ScriptedDenoiser(6, seed=1, dtype=torch.float32)
    state = make_block_state([[0.5, 0.5]], is_mask=[[True, False]], top=[[3, 3]], vocab_size=6)
    state.step, state.steps = 1, torch.tensor([1])
    state.logits = torch.tensor([[[0.0, 1.0, 2.0, 0.5, -1.0, 0.0], [3.0, 0.0, 0.0, 0.0, 0.0, 0.0]]])
    embeds = plugin().embed_state(state, model)
    table = model.embedding_table()
    expected = model.mask_embedding() + 0.15 * (state.logits[0, 0].softmax(-1) @ table)
    torch.testing.assert_close(embeds[0, 0], expected)
    torch.testing.assert_close(embeds[0, 1], table[3])
    state.step, state.steps = 0, torch.tensor([0])  # a block's first forward, no canvas view: plain inputs
    torch.testing.assert_close(plugin().embed_state(state, model)[0, 0], model.mask_embedding())


def test_threshold_relaxes_from_one():
    """Forward 0 decodes only the most confident position (thr 1.0); forward 5 every position >= 0.9."""
    state = make_block_state([[0.95, 0.97, 0.5]])
    state.steps = torch.tensor([1])
    assert plugin().promote(state).tolist() == [[False, True, False]]
    state.steps = torch.tensor([6])
    assert plugin().promote(state).tolist() == [[True, True, False]]


@pytest.mark.parametrize("block_causal", [False, True])
def test_the_canvas_view_is_used_where_the_forward_computes_it(block_causal):
    """On a bidirectional model decoded without a cache the positions after the block are smoothed too (so
    several blocks decode otherwise than block by block); on a block-causal one there is nothing after it."""
    model = ScriptedDenoiser(12, seed=4, block_causal=block_causal)
    prompts = [[5, 6, 7], [8, 9]]
    config = DecodeConfig(block_size=4, max_new_tokens=12)
    spy = Spy()
    smoothed = generate(model, prompts, make_manager("iter-smooth", extra_plugins=[spy]), config)
    assert set(spy.seen) == {not block_causal}
    blockwise = generate(model, prompts, make_manager("threshold", extra_plugins=[BlockOnly()]), config)
    same = [a.ids == b.ids and a.nfe == b.nfe for a, b in zip(smoothed, blockwise)]
    assert all(same) if block_causal else not all(same)


class BlockOnly(STRATEGY):
    """iter-smooth without the canvas view: the block alone is smoothed."""

    canvas_view = False


class Spy:
    """Records whether each step had the canvas view."""

    def __init__(self):
        self.seen = []

    @hookimpl
    def on_step_end(self, state):
        self.seen.append(state.canvas_view)


def test_decoding_invariants():
    check_invariants(lambda: make_manager("iter-smooth"))


def test_runs_on_a_shipped_model(tmp_path, capsys):
    assert cli(["run", "--strategy", "iter-smooth", "--trainer", "oput", "--limit", "2", "--store",
                str(tmp_path / "r.db"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["strategy"] == "iter-smooth" and result["decisions"]["embed_state"] == "iter-smooth"
