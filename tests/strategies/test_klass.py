"""KLASS (KL-adaptive stability sampling): the authors' transcripts, the rule on hand-computed steps, the
decoding invariants, and the command line."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transcripts import cases, check_case

from workbench import Stash, check_invariants, hand_state, make_manager
from workbench.cli import main as cli
from workbench.decoding.registry import StrategyParamError

MASK = 1


def klass(**params):
    return make_manager("klass", params=params).get_plugin("klass")


@pytest.mark.parametrize("transcript, case", cases("klass"))
def test_matches_the_authors_stable_confident_decode(transcript, case):
    check_case(transcript, case)


def test_defaults_and_tau():
    plugin = klass()
    assert (plugin.conf_threshold, plugin.kl_threshold, plugin.history_length, plugin.unmask) == (0.9, 0.01, 2, "all")
    assert (plugin.mask_logit, plugin.fill_at_cap) == ("remove", True)
    assert klass(tau=0.6).conf_threshold == 0.6
    for bad in ({"history_length": 0}, {"kl_threshold": -1.0}, {"unmask": "random"}):
        with pytest.raises(StrategyParamError):
            klass(**bad)


def dist(p2):
    """Vocabulary of 8 (0 PAD, 1 MASK never likely): token 2 at p2, the rest spread over 3-7."""
    return [0.0, 0.0, p2] + [(1.0 - p2) / 5] * 5


def forward(plugin, stash, probs, *, step, block=1, is_mask=None, ahead=None):
    """One hand-made forward of one row: `probs` (L, V); returns the promoted positions."""
    p = torch.tensor([probs], dtype=torch.float64)
    state = hand_state(probs=p.float(), is_mask=is_mask, step=step)
    state.stash, state.block_index = stash, block
    state.logits = p.log()
    if ahead is not None:  # the canvas view: this block's logits, then the next block's (what KLASS reads)
        state.canvas_view = True
        state.canvas_logits = torch.cat([p.log(), torch.tensor([ahead]).log()], dim=1)
    return plugin.promote(state).positions[0].tolist()


def test_stability_score_is_upstreams_kl_with_eps():
    from strategies.klass import KL_EPS, stability

    p, q = [0.5, 0.5, 0.0], [0.25, 0.75, 0.0]
    want = sum(a * (math.log(a + KL_EPS) - math.log(b + KL_EPS)) for a, b in zip(p, q))
    as64 = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    assert float(stability(as64(p), as64(q))) == pytest.approx(want, rel=1e-12)
    against_zeros = sum(a * (math.log(a + KL_EPS) - math.log(KL_EPS)) for a in p)  # upstream's first block
    assert float(stability(as64(p), as64([0.0] * 3))) == pytest.approx(against_zeros, rel=1e-12)
    assert against_zeros > 20  # never below any sensible kl_threshold: the first block starts unstable


STILL = [dist(0.95), dist(0.9), dist(0.85), dist(0.3)]
MOVED = [dist(0.95), dist(0.99), dist(0.85), dist(0.3)]  # position 1 moved (KL ~ 0.2), position 2 did not


def third_forward(**params):
    """Forwards 1-2 see STILL, forward 3 MOVED (position 0 already unmasked); returns forward 3's promotion."""
    plugin, stash = klass(**params), Stash()
    assert forward(plugin, stash, STILL, step=1) == [True, False, False, False]  # no history: the schedule
    forward(plugin, stash, STILL, step=2, is_mask=[[False, True, True, True]])
    return forward(plugin, stash, MOVED, step=3, is_mask=[[False, True, True, True]])


def test_ready_needs_h_stable_scores_and_confidence():
    """History 2: forward 2 compares with zeros (never stable), so nothing is ready before forward 3; then
    position 2 (stable, 0.85 > 0.8) is ready and unmasked alone, though position 1 is more confident."""
    assert third_forward(conf_threshold=0.8) == [False, False, True, False]
    # Not confident enough (0.85 <= 0.9): nothing ready, the schedule's most confident open position (0.99).
    assert third_forward(conf_threshold=0.9) == [False, True, False, False]
    # History 3: forward 3's window still holds the comparison with zeros.
    assert third_forward(conf_threshold=0.8, history_length=3) == [False, True, False, False]
    # Forward 2 alone is never ready (history 2): its window holds the first forward's score against zeros.
    plugin, stash = klass(conf_threshold=0.8), Stash()
    forward(plugin, stash, STILL, step=1)
    assert forward(plugin, stash, STILL, step=2, is_mask=[[False, True, True, True]]) == [False, True, False, False]


def test_unmask_max_conf_and_min_kl_choose_one_ready_position():
    first = [dist(0.95), dist(0.93), dist(0.92), dist(0.3)]
    then = [dist(0.955), dist(0.935), dist(0.92), dist(0.3)]  # 0 and 1 moved a little (stable), 2 not at all
    results = {}
    for rule in ("all", "max_conf", "min_kl"):
        plugin, stash = klass(unmask=rule, kl_threshold=0.05), Stash()
        forward(plugin, stash, first, step=1, is_mask=[[True] * 4])
        forward(plugin, stash, first, step=2, is_mask=[[True] * 4])
        results[rule] = forward(plugin, stash, then, step=3, is_mask=[[True] * 4])
    assert results["all"] == [True, True, True, False]
    assert results["max_conf"] == [True, False, False, False]  # 0.955
    assert results["min_kl"] == [False, False, True, False]  # score 0


def test_scores_cross_blocks_through_the_canvas_view():
    """At block 2's first forward the previous distribution is block 1's last look at those positions: when it
    matches, a position can be ready at block 2's second forward (history 2); without it, it cannot."""
    plugin = klass(conf_threshold=0.8)
    probs = [dist(0.95), dist(0.9), dist(0.85), dist(0.2)]
    for ahead, ready in ((probs, [True, True, True, False]), (None, [True, False, False, False])):
        stash = Stash()
        forward(plugin, stash, [dist(0.5)] * 4, step=1, ahead=ahead)  # block 1's last forward
        forward(plugin, stash, probs, step=1, block=2)  # block 2: the schedule (one)
        assert forward(plugin, stash, probs, step=2, block=2, is_mask=[[True] * 4]) == ready


def test_schedule_spreads_the_block_over_the_cap_and_a_mask_argmax_stays_open():
    from workbench import DecodeConfig

    plugin = klass(mask_logit="keep")
    probs = [dist(0.5), dist(0.6), [0.0, 0.9, 0.1, 0, 0, 0, 0, 0], dist(0.4)]  # position 2's argmax is MASK
    p = torch.tensor([probs], dtype=torch.float64)
    state = hand_state(probs=p.float(), step=1)
    state.config = DecodeConfig(block_size=4, max_forwards_per_block=2)  # 4 positions over 2 steps: 2, 2
    state.cap = 2
    state.logits = p.log()
    # the two most confident are positions 2 (MASK, 0.9) and 1 (0.6); unmasking MASK changes nothing
    assert plugin.promote(state).positions[0].tolist() == [False, True, False, False]


def test_keeps_the_decoding_invariants():
    check_invariants(lambda: make_manager("klass"), seeds=(0,))


def test_runs_from_the_command_line(tmp_path, capsys):
    assert cli(["run", "--strategy", "klass", "--trainer", "base", "--limit", "16", "--store",
                str(tmp_path / "r.db"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["decisions"]["promote"] == "klass" and result["n"] == 16 and result["tpf"] > 0
