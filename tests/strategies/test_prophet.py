"""prophet: Prophet's early commit (Li et al. 2025) on LLaDA's low-confidence schedule."""

from __future__ import annotations

import json

import pytest
import torch
from transcripts import cases, check_case

from workbench import DecodeConfig, PluginRuntimeError, check_invariants, generate, make_manager
from workbench.authoring import properties as P
from workbench.authoring.properties import MASK_ID, make_block_state
from workbench.cli import main as cli
from workbench.decoding.registry import StrategyParamError


@pytest.mark.parametrize("transcript, case", cases("prophet"))
def test_matches_prophet(transcript, case):
    check_case(transcript, case)


def plugin(**params):
    return make_manager("prophet", params=params).get_plugin("prophet")


def test_defaults_tau_and_phases():
    p = plugin()
    assert (p.steps, p.late_threshold, p.answer_length, p.constraints, p.mask_logit) == (None, 2.5, 5, "", "remove")
    assert [p.phase_threshold(x) for x in (0.0, 0.32, 0.33, 0.66, 0.67, 1.0)] == [7.5, 7.5, 5.0, 5.0, 2.5, 2.5]
    scaled = plugin(tau=1.0)  # --tau scales the published 3:2:1 schedule
    assert [scaled.phase_threshold(x) for x in (0.1, 0.5, 0.9)] == [3.0, 2.0, 1.0]
    assert plugin(tau=1.0, early_threshold=9.0).phase_threshold(0.1) == 9.0
    assert plugin(constraints="7:12|8:13").region_start == 10  # eval_llada.py: two past the last forced token
    assert plugin(constraints="7:12", answer_start=3).region_start == 3 and plugin().region_start is None
    with pytest.raises(StrategyParamError, match="offset:token_id"):
        plugin(constraints="200:The")


def step_state(gaps: list[float], *, start: int = 0, step: int = 1, conf=None, max_new_tokens: int = 12):
    """A 4-position block whose top-1 logit exceeds the top-2 by `gaps`; confidences `conf`."""
    state = make_block_state([conf or [0.4, 0.9, 0.6, 0.3]], vocab_size=6)
    state.config = DecodeConfig(block_size=4, max_new_tokens=max_new_tokens)
    state.start, state.step, state.steps = start, step, torch.tensor([step])
    logits = torch.zeros(1, 4, 6)
    logits[0, :, 4] = torch.tensor(gaps)
    state.logits = logits
    return state


def test_early_commit_on_hand_computed_steps():
    """Block scope, one token per step (12 steps): step 1 is the early phase (1/12 < 0.33, threshold 7.5)."""
    p = plugin()
    assert p.promote(step_state([8.0] * 4)).positions.tolist() == [[True] * 4]  # mean gap 8 >= 7.5: commit
    # mean gap 7 < 7.5: the schedule's one position, the most confident
    assert p.promote(step_state([8.0, 8.0, 6.0, 6.0])).positions.tolist() == [[False, True, False, False]]
    # block 2, its first step: global step 5, progress 5/12 (mid, 5.0): mean gap 6 commits
    assert p.promote(step_state([6.0] * 4, start=4)).positions.tolist() == [[True] * 4]
    # progress 9/12 (late, 2.5)
    assert p.promote(step_state([2.5] * 4, start=8)).positions.tolist() == [[True] * 4]
    assert p.promote(step_state([2.4] * 4, start=8)).positions.tolist() == [[False, True, False, False]]
    assert plugin(tau=2.0).promote(step_state([6.0] * 4)).positions.tolist() == [[True] * 4]  # early = 6.0


def test_llada_schedule():
    """steps 6 over 3 blocks of 4: 2 steps per block, k = 2, 2; with one forced position k = 2, 1."""
    p = plugin(steps=6, tau=100.0)
    state = step_state([0.0] * 4)
    assert p.schedule(state) == (2, 1, 6)
    assert p.promote(state).positions.tolist() == [[False, True, True, False]]
    state.active = torch.tensor([[True, True, True, False]])
    state.is_mask = state.active.clone()
    assert p.promote(state).positions.tolist() == [[False, True, True, False]]
    state.step = 2
    state.is_mask = torch.tensor([[True, False, False, False]])
    assert p.promote(state).positions.tolist() == [[True, False, False, False]]
    with pytest.raises(ValueError, match="multiple"):
        plugin(steps=5).schedule(state)


def test_mask_logit_keep_leaves_a_selected_mask_argmax_open():
    state = step_state([0.0] * 4, conf=[0.4, 0.9, 0.6, 0.3])
    state.top = torch.tensor([[7, MASK_ID, 7, 7]])
    assert plugin(mask_logit="keep", tau=100.0).promote(state).positions.tolist() == [[False] * 4]


def test_generation_scope_needs_the_canvas_view():
    model = P.ScriptedDenoiser(12, seed=2, block_causal=True)
    manager = make_manager("prophet", params={"answer_start": 6})
    with pytest.raises(PluginRuntimeError, match="bidirectional model decoded with --cache none"):
        generate(model, [[5, 6]], manager, DecodeConfig(block_size=4, max_new_tokens=12))


def test_generation_scope_fills_later_blocks_without_forwards():
    """An early commit in block 1 fills blocks 2 and 3 from the same forward: no forward there."""
    model = P.ScriptedDenoiser(12, seed=2, scale=8.0)
    config = DecodeConfig(block_size=4, max_new_tokens=12)
    out = generate(model, [[5, 6], [7, 8, 9]], make_manager("prophet", params={"answer_start": 8, "tau": 0.0}),
                   config)
    for row in out:
        assert row.block_steps[0] == 1 and all(steps == 0 for steps in row.block_steps[1:])
        assert row.nfe == 1 and model.mask_id not in row.ids


@pytest.mark.parametrize("params", [{}, {"steps": 6}])
def test_decoding_invariants(params):
    check_invariants(lambda: make_manager("prophet", params=params))


def test_generation_scope_invariants():
    model = P.ScriptedDenoiser(12, seed=3, eos_bias=1.0)
    config = DecodeConfig(block_size=4, max_new_tokens=12)
    for tau in (0.0, 1.0, 3.0):
        manager = lambda: make_manager("prophet", params={"constraints": "5:9", "tau": tau})  # noqa: E731
        prompts = [[4, 5, 6], [7], [8, 9, 10, 11, 4]]
        trace = P.record(manager, model, prompts, config)
        P.check_progress(trace, config)
        P.check_eos_stop(trace.results, config, model.eos_id)
        P.check_batch_invariance(manager, model, prompts, config)
        assert all(r.ids[5] == 9 for r in trace.results if len(r.ids) > 5)  # the forced token is kept


def test_runs_on_a_shipped_model(tmp_path, capsys):
    assert cli(["run", "--strategy", "prophet", "--trainer", "oput", "--limit", "2", "--store",
                str(tmp_path / "r.db"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["strategy"] == "prophet" and result["decisions"]["converge"] == "prophet"
