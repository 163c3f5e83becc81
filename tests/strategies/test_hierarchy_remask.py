"""hierarchy-remask: dInfer's hierarchical decoding with remasking (get_transfer_index_hierarchy_remask)."""

from __future__ import annotations

import json

import pytest
import torch
from transcripts import cases, check_case

from workbench import check_invariants, make_manager
from workbench.authoring.properties import MASK_ID, make_block_state
from workbench.cli import main as cli


@pytest.mark.parametrize("transcript, case", cases("hierarchy-remask"))
def test_matches_dinfer(transcript, case):
    check_case(transcript, case)


def plugin(**params):
    return make_manager("hierarchy-remask", params=params).get_plugin("hierarchy-remask")


def test_defaults_and_tau():
    p = plugin()
    assert (p.threshold, p.low_threshold, p.remask_threshold, p.mask_logit) == (0.9, 0.4, 0.4, "remove")
    assert plugin(tau=0.7).threshold == 0.7


def test_low_confidence_tokens_are_taken_back():
    state = make_block_state([[0.95, 0.3, 0.5, 0.39]], is_mask=[[True, False, False, False]])
    assert plugin().revoke(state).tolist() == [[False, True, False, True]]  # tokens below 0.4; never open ones


def test_a_hand_computed_step():
    """Open after remasking: [0, 1] and [3, 4] (position 1 was a token with conf 0.3, taken back: R = 1).
    Span maxima: 0 (0.95 > low 0.4, and > high 0.9); span [3, 4]'s maximum 0.35 fails low. One chosen, R + 1 =
    2 needed: the most confident other open position, 3, tops it up; 1 and 4 stay open."""
    state = make_block_state([[0.95, 0.3, 0.5, 0.35, 0.2, 0.45]],
                             is_mask=[[True, True, False, True, True, False]])
    state.revoked = torch.tensor([[False, True, False, False, False, False]])
    result = plugin().promote(state)
    assert result.positions.tolist() == [[True, False, False, True, False, False]] and result.fallback is False
    # Two taken back need three: 3 and then 1 (0.3 > 0.2).
    state.revoked = torch.tensor([[False, True, False, False, True, False]])
    assert plugin().promote(state).positions.tolist() == [[True, True, False, True, False, False]]
    # Strict comparisons: a span maximum equal to low does not pass; nothing needs topping up without remasks.
    state = make_block_state([[0.4, 0.1, 0.91]], is_mask=[[True, False, True]])
    assert plugin().promote(state).positions.tolist() == [[False, False, True]]


def test_mask_logit_keep_leaves_a_chosen_mask_argmax_open():
    state = make_block_state([[0.95, 0.6]], top=[[MASK_ID, 7]])
    assert plugin(mask_logit="keep").promote(state).positions.tolist() == [[False, False]]  # 0 chosen, MASK
    assert plugin().promote(state).positions.tolist() == [[True, False]]


def test_decoding_invariants():
    check_invariants(lambda: make_manager("hierarchy-remask"))


def test_runs_on_a_shipped_model(tmp_path, capsys):
    assert cli(["run", "--strategy", "hierarchy-remask", "--trainer", "oput", "--limit", "2", "--store",
                str(tmp_path / "r.db"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["strategy"] == "hierarchy-remask" and result["decisions"]["revoke"] == "hierarchy-remask"
