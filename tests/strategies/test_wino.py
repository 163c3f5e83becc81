"""WINO (wide-in drafting, narrow-out verification on the shadow block): the authors' transcripts, the rule on
hand-computed steps, the decoding invariants, and the command line."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transcripts import cases, check_case

from workbench import check_invariants, hand_state, make_manager
from workbench.cli import main as cli
from workbench.decoding.registry import StrategyParamError

MASK = 1


def wino(**params):
    return make_manager("wino", params=params).get_plugin("wino")


@pytest.mark.parametrize("transcript, case", cases("wino"))
def test_matches_the_authors_decoding_wino(transcript, case):
    check_case(transcript, case)


def test_defaults_and_tau():
    plugin = wino()
    assert (plugin.threshold, plugin.threshold_back, plugin.mask_logit) == (0.6, 0.9, "remove")
    assert wino(tau=0.8).threshold == 0.8
    with pytest.raises(StrategyParamError, match="threshold_back"):
        wino(threshold_back=1.5)


def step(draft_probs, token_ids, shadow_probs, *, bound=None):
    """A hand-made step of one row: `draft_probs` (L, V) this forward's distributions, `token_ids` (L,) the
    current ids (None = open), `shadow_probs` (L, V) the shadow block's. Returns (revoked, promoted)."""
    probs = torch.tensor([draft_probs], dtype=torch.float64)
    state = hand_state(probs=probs.float(), is_mask=[[t is None for t in token_ids]])
    state.ids = torch.tensor([[MASK if t is None else t for t in token_ids]])
    state.logits = probs.log().float()  # the strategy's softmax of log p gives p back
    state.shadow_logits = torch.tensor([shadow_probs], dtype=torch.float64).log().float()
    plugin = wino(mask_logit="keep")
    if bound is not None:  # a later step of the block: last_accept = bound
        from strategies.wino import BOUND

        state.stash[BOUND] = (state.block_index, torch.tensor([bound]))
    revoked = plugin.revoke(state)
    promoted = plugin.promote(state).positions
    return revoked[0].tolist(), promoted[0].tolist()


def dist(p2):
    """Vocabulary of 8 (0 PAD, 1 MASK never likely): token 2 at p2, the rest spread over 3-7, so for
    p2 > 1/6 the argmax is token 2 with confidence p2."""
    return [0.0, 0.0, p2] + [(1.0 - p2) / 5] * 5


def test_wide_in_above_threshold_and_narrow_out_on_the_shadow():
    # positions 0, 1 hold token 2; 2-5 open with max confidences 0.7, 0.59, 0.65, 0.55.
    draft = [dist(0.9), dist(0.9), dist(0.7), dist(0.59), dist(0.65), dist(0.55)]
    # the shadow: token 2 at position 0 keeps 0.95, at position 1 only 0.5 (it fails verification)
    shadow = [dist(0.95), dist(0.5)] + [dist(0.5)] * 4
    revoked, promoted = step(draft, [2, 2, None, None, None, None], shadow)
    assert promoted == [False, False, True, False, True, False]  # above 0.6
    assert revoked == [False, True, False, False, False, False]  # two drafts: narrow out runs


def test_one_draft_revokes_nothing_and_none_passing_drafts_the_best():
    draft = [dist(0.9), dist(0.9), dist(0.55), dist(0.58), dist(0.52), dist(0.51)]
    shadow = [dist(0.1), dist(0.1)] + [dist(0.5)] * 4
    revoked, promoted = step(draft, [2, 2, None, None, None, None], shadow)
    assert promoted == [False, False, False, True, False, False]  # none > 0.6: the most confident (0.58)
    assert revoked == [False] * 6  # a single draft: verification does not revoke, however low


def test_draft_cap_keeps_the_most_confident():
    # 8 open positions, 7 above 0.6: max_accept = min(max(int(0.7 * 8), 5), 20) = 5.
    confs = [0.99, 0.61, 0.98, 0.97, 0.62, 0.96, 0.95, 0.3]
    revoked, promoted = step([dist(c) for c in confs], [None] * 8, [dist(0.5)] * 8)
    assert promoted == [True, False, True, True, False, True, True, False]
    assert int(8 * 0.7) == 5 and not any(revoked)


def test_revocations_bounded_by_the_previous_steps_drafts():
    # three tokens fail verification (0.2, 0.4, 0.3); the previous step drafted 3 (last_accept = 3): at most
    # 2 go back, the least confident on the shadow.
    draft = [dist(0.9)] * 3 + [dist(0.8), dist(0.8), dist(0.2)]
    shadow = [dist(0.2), dist(0.4), dist(0.3)] + [dist(0.5)] * 3
    revoked, promoted = step(draft, [2, 2, 2, None, None, None], shadow, bound=3)
    assert promoted == [False, False, False, True, True, False]
    assert revoked == [True, False, True, False, False, False]
    revoked, _ = step(draft, [2, 2, 2, None, None, None], shadow, bound=4)  # 3 < 4 fail: all of them go
    assert revoked == [True, True, True, False, False, False]


def test_a_revoked_token_is_not_redrafted_in_the_same_step():
    """The drafts come from the open positions before the revocation; a revoked position (now open) is
    not among them even when its confidence is the highest."""
    draft = [dist(0.99), dist(0.9), dist(0.7), dist(0.65)]
    shadow = [dist(0.1), dist(0.95), dist(0.5), dist(0.5)]
    revoked, promoted = step(draft, [2, 2, None, None], shadow)
    assert revoked == [True, False, False, False] and promoted == [False, False, True, True]


def test_block_ends_within_its_length_and_revokes():
    """WINO's progress bound (a block takes at most L forwards), and revocations happen on a random model."""
    from plugins.tracer import RevisionCounter
    from workbench.authoring.properties import ScriptedDenoiser
    from workbench import DecodeConfig, generate

    model = ScriptedDenoiser(16, eos_bias=-50.0, scale=0.3, seed=2)
    counter = RevisionCounter()
    manager = make_manager("wino", params={"threshold": 0.1, "threshold_back": 0.99}, extra_plugins=[counter])
    results = generate(model, [[5, 6], [7]], manager, DecodeConfig(block_size=8, max_new_tokens=16,
                                                                   max_forwards_per_block=100))
    assert all(steps <= 8 for r in results for steps in r.block_steps)
    assert sum(r.extras.get("revocations", 0) for r in results) > 0


def test_keeps_the_decoding_invariants():
    check_invariants(lambda: make_manager("wino"), seeds=(0,))


def test_runs_from_the_command_line(tmp_path, capsys):
    assert cli(["run", "--strategy", "wino", "--trainer", "base", "--limit", "16", "--store",
                str(tmp_path / "r.db"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["decisions"]["revoke"] == "wino" and result["decisions"]["promote"] == "wino"
    assert result["n"] == 16 and result["tpf"] > 0 and not math.isnan(result["accuracy"])
