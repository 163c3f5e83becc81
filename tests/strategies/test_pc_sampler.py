"""PC-Sampler (`pc-sampler`): the calibrated, position-weighted score and LLaDA's schedule on hand-computed
steps, the corpus file, parity with the authors' `generate_with_pc_sampler` (golden transcripts), the
decoding invariants, and the command line."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from transcripts import ROOT, cases, check_case

from workbench import DecodeConfig, PluginError, generate, hand_state, make_manager
from workbench.authoring import checker
from workbench.authoring.properties import MASK_ID
from workbench.cli import main as cli
from workbench.models.native import build_random_model

from strategies.pc_sampler import PCSampler, frequency_table, transfer_counts


@pytest.fixture
def corpus(tmp_path):
    """f(3) = 0.5, f(4) = 0.1, f(5) = 0.01; every other id 1 / num_token = 0.01."""
    path = tmp_path / "corpus.json"
    path.write_text(json.dumps({"num_token": 100, "p_baseline_dict": {"3": 50, "4": 10, "5": 1}}))
    return str(path)


def step_state():
    """One row, four open positions: tokens 3, 4, 5, 6 with probability 0.9, 0.8, 0.6, 0.5."""
    return hand_state([[0.9, 0.8, 0.6, 0.5]], top=[[3, 4, 5, 6]], vocab_size=8)


def promoted(state, **params):
    return PCSampler(**params).promote(state).positions.tolist()


def test_the_score_on_a_hand_computed_step(corpus):
    # salience -p log f: 0.9 ln 2 = 0.624, 0.8 ln 10 = 1.842, 0.6 ln 100 = 2.763, 0.5 ln 100 = 2.303;
    # lambda 0.25: weights 1, 0.779, 0.607, 0.472 -> 0.624, 1.435, 1.676, 1.088: the best two are 2 and 1
    assert promoted(step_state(), baseline=corpus, steps=2) == [[False, True, True, False]]
    # lambda 1: weights 1, 0.368, 0.135, 0.050 -> 0.624, 0.678, 0.374, 0.115: 1 and 0
    assert promoted(step_state(), baseline=corpus, steps=2, lambd=1.0) == [[True, True, False, False]]
    # alpha 1 clips 1.842, 2.763, 2.303 to 1 -> 0.624, 0.779, 0.607, 0.472: 1 and 0
    assert promoted(step_state(), baseline=corpus, steps=2, alpha=1.0) == [[True, True, False, False]]
    # steps 4: one a step, the best alone
    assert promoted(step_state(), baseline=corpus, steps=4) == [[False, False, True, False]]


def test_without_a_corpus_the_score_is_position_weighted_confidence():
    # f = 1/8 everywhere: 0.9, 0.8, 0.6, 0.5 times ln 8 times the weights -> 1.871, 1.296, 0.757, 0.491
    assert promoted(step_state(), steps=2) == [[True, True, False, False]]
    assert promoted(step_state(), steps=2, lambd=0.0) == [[True, True, False, False]]


def test_llada_schedule():
    n = torch.tensor([5, 3, 0])
    assert [transfer_counts(n, 2, i).tolist() for i in range(2)] == [[3, 2, 0], [2, 1, 0]]
    assert [transfer_counts(torch.tensor([3]), 4, i).item() for i in range(4)] == [1, 1, 1, 0]


def test_a_schedule_longer_than_the_block_spends_its_forwards():
    """steps 6 on a block of 4: two steps promote nothing, as the reference spends them (the cap must allow)."""
    model = build_random_model(16, seed=0, hidden_size=16, num_layers=1, num_heads=2)
    config = DecodeConfig(block_size=4, max_new_tokens=8, max_forwards_per_block=6)
    result = generate(model, [[5, 6]], make_manager("pc-sampler", params={"steps": 6}), config)[0]
    assert result.block_steps[0] == 6 and model.mask_id not in result.ids


def test_mask_logit_keep_leaves_a_mask_prediction_open_and_commits_it_as_mask(corpus):
    state = hand_state([[0.9, 0.8, 0.6, 0.5]], top=[[3, 4, MASK_ID, 6]], vocab_size=8)
    keep = PCSampler(baseline=corpus, steps=2, mask_logit="keep")
    result = keep.promote(state)  # the best two are 2 (MASK: stays open) and 1
    assert result.positions.tolist() == [[False, True, False, False]] and result.fallback is False
    assert keep.commit(state)[0, 2] == MASK_ID  # the reference never revisits it
    assert PCSampler(baseline=corpus).commit(state)[0, 2] == MASK_ID  # top there is MASK too: the default fills
    filled = hand_state([[0.9, 0.8]], top=[[3, 4]], vocab_size=8)
    assert PCSampler().commit(filled).tolist() == [[3, 4]] and keep.commit(filled)[0].tolist() == [MASK_ID] * 2


def test_corpus_file(tmp_path, corpus):
    table = frequency_table(corpus, 8)
    assert table.tolist() == pytest.approx([0.01, 0.01, 0.01, 0.5, 0.1, 0.01, 0.01, 0.01])
    other = tmp_path / "counts.json"  # the authors' counting script writes this key
    other.write_text(json.dumps({"num_token": 4, "token_frequency_dict": {"3": 1}}))
    assert frequency_table(str(other), 5).tolist() == pytest.approx([0.25] * 5)
    assert frequency_table(None, 4).tolist() == [0.25] * 4
    wide = tmp_path / "wide.json"
    wide.write_text(json.dumps({"num_token": 4, "p_baseline_dict": {"9": 1}}))
    with pytest.raises(ValueError, match="beyond the model's vocabulary"):
        frequency_table(str(wide), 8)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"counts": {}}))
    with pytest.raises(ValueError, match="not a PC-Sampler corpus"):
        frequency_table(str(wrong), 8)


def test_defaults_and_tau():
    pc = make_manager("pc-sampler").get_plugin("pc-sampler")
    assert (pc.lambd, pc.alpha, pc.steps, pc.baseline, pc.mask_logit, pc.temperature) == (
        0.25, 10.0, None, None, "remove", 0.0)
    assert make_manager("pc-sampler", params={"tau": 1.0}).get_plugin("pc-sampler").lambd == 1.0


@pytest.mark.parametrize("bad", [dict(lambd=-1.0), dict(alpha=0.0), dict(steps=0), dict(steps=2.5),
                                 dict(baseline="no/such/corpus.json"), dict(mask_logit="drop"),
                                 dict(temperature=math.nan)])
def test_parameters_are_validated(bad):
    with pytest.raises(PluginError):
        make_manager("pc-sampler", params=bad)


def absolute(case: dict) -> dict:
    """The case with its corpus path (repository-relative in the transcript) made absolute."""
    case = copy.deepcopy(case)
    params = case["workbench"]["params"]
    if "baseline" in params:
        params["baseline"] = str(ROOT / params["baseline"])
    return case


@pytest.mark.parametrize("transcript, case", cases("pc-sampler"))
def test_matches_the_authors_sampler(transcript, case):
    """Token for token and forward for forward with `generate_with_pc_sampler`, each prompt alone and all
    eight in one left-padded batch; the sampled case draws LLaDA's Gumbel noise from the per-sample streams."""
    check_case(transcript, absolute(case))


def test_the_transcript_depends_on_the_corpus():
    """The published case is not matched by accident: without the corpus it differs."""
    (transcript, case), = [p.values for p in cases("pc-sampler") if p.id.endswith(":published")]
    changed = absolute(case)
    del changed["workbench"]["params"]["baseline"]
    with pytest.raises(AssertionError):
        check_case(transcript, changed)


def test_passes_the_decoding_invariants_with_every_builtin_strategy():
    report = checker.check_target("pc-sampler", examples=3)
    assert report.ok, report.text()


def test_runs_from_the_command_line_on_a_shipped_model(tmp_path, capsys):
    assert cli(["run", "--strategy", "pc-sampler", "--limit", "4", "--json", "--quiet",
                "--store", str(tmp_path / "r.db")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 4 and result["decisions"]["promote"] == "pc-sampler"
    assert result["nfe"] == 16  # one token per forward: two blocks of 8 (the choice task's 16 positions)
