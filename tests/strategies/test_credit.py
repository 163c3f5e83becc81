"""credit: dInfer's credit decoding (CreditThresholdParallelDecoder)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transcripts import cases, check_case

from workbench import check_invariants, make_manager
from workbench.authoring.properties import MASK_ID, make_block_state
from workbench.cli import main as cli
from workbench.decoding.registry import StrategyParamError


@pytest.mark.parametrize("transcript, case", cases("credit"))
def test_matches_dinfer(transcript, case):
    check_case(transcript, case)


def plugin(**params):
    return make_manager("credit", params=params).get_plugin("credit")


def test_defaults_and_tau():
    p = plugin()
    assert (p.tau, p.credit_alpha, p.boost_gamma, p.decay_beta, p.mask_logit) == (0.9, 0.7, 0.2, 0.8, "remove")
    assert plugin(tau=0.5).tau == 0.5
    with pytest.raises(StrategyParamError, match="decay_beta"):
        plugin(decay_beta=1.5)


def softmax(row):
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


def test_credit_fusion_on_hand_computed_steps():
    """Two forwards of one block, by hand: C decays by beta (not at the first), gains p_top1 ** gamma at the
    top-1 of open positions only, and the step reads logits + alpha * log(1 + C)."""
    p = plugin(mask_logit="keep")
    state = make_block_state([[0.0, 0.0]], is_mask=[[True, False]], vocab_size=4)  # position 1 is a token
    first = [[[0.0, 0.0, 2.0, 1.0], [3.0, 0.0, 0.0, 0.0]]]
    state.step = 1
    fused = p.process_logits(state, torch.tensor(first))
    p1 = softmax(first[0][0])[2]
    credit = p1 ** 0.2
    assert fused[0, 0].tolist() == pytest.approx([0.0, 0.0, 2.0 + 0.7 * math.log(1 + credit), 1.0], rel=1e-6)
    assert fused[0, 1].tolist() == pytest.approx(first[0][1])  # a token position earns no credit
    second = [[[0.0, 0.0, 1.0, 1.5], [3.0, 0.0, 0.0, 0.0]]]  # top-1 moves to token 3
    state.step = 2
    fused = p.process_logits(state, torch.tensor(second))
    p3 = softmax(second[0][0])[3]
    c2, c3 = 0.8 * credit, p3 ** 0.2
    assert fused[0, 0].tolist() == pytest.approx(
        [0.0, 0.0, 1.0 + 0.7 * math.log(1 + c2), 1.5 + 0.7 * math.log(1 + c3)], rel=1e-6)


def test_credit_lifts_a_token_that_keeps_winning_over_the_threshold():
    """p = 0.85 for the same token at every forward: below tau 0.9 alone, above it after one fused step."""
    p = plugin(tau=0.9)
    state = make_block_state([[0.0]], vocab_size=4)
    logit = math.log(0.85 / 0.15 * 2)  # tokens 0 and 3 share 0.15, MASK removed: p(token 2) = 0.85
    logits = torch.tensor([[[0.0, 0.0, logit, 0.0]]])
    for step in (1, 2):
        state.step = step
        fused = p.process_logits(state, logits.clone())
        conf = fused.softmax(-1)[0, 0, 2].item()
        assert conf > 0.9 and softmax([0.0, logit, 0.0])[1] == pytest.approx(0.85)


def test_mask_logit_keep_never_promotes_a_mask_argmax():
    p = plugin(mask_logit="keep", tau=0.5)
    state = make_block_state([[0.95, 0.7, 0.2]], top=[[MASK_ID, 7, 8]])
    result = p.promote(state)
    assert result.positions.tolist() == [[False, True, False]] and result.fallback is False
    assert plugin(tau=0.5).promote(state).tolist() == [[True, True, False]]  # remove: the rule as is


def test_decoding_invariants():
    check_invariants(lambda: make_manager("credit"))


def test_runs_on_a_shipped_model(tmp_path, capsys):
    assert cli(["run", "--strategy", "credit", "--trainer", "oput", "--limit", "2", "--store",
                str(tmp_path / "r.db"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["strategy"] == "credit" and result["n"] == 2 and result["decisions"]["process_logits"] == "credit"
