"""Hierarchical (span-maxima) strategy."""

from __future__ import annotations

import pytest
from transcripts import cases, check_case

from workbench.authoring.properties import make_block_state as block_state
from workbench.decoding.registry import StrategyParamError, make_manager


def promote(strategy, state, **params):
    return make_manager(strategy, params=params).get_plugin(strategy).promote(state).tolist()


def test_defaults_and_tau_alias():
    plugin = make_manager("hierarchical").get_plugin("hierarchical")
    assert (plugin.threshold, plugin.low_threshold) == (0.92, 0.62)
    assert make_manager("hierarchical", params={"tau": 0.5}).get_plugin("hierarchical").threshold == 0.5
    with pytest.raises(StrategyParamError, match="low_threshold"):
        make_manager("hierarchical", params={"low_threshold": -0.1})


def test_one_maximum_per_span_above_low():
    # masked spans: [0, 1, 2] and [4, 5]; position 3 is a token
    state = block_state([[0.3, 0.7, 0.65, 0.99, 0.5, 0.4]],
                        is_mask=[[True, True, True, False, True, True]])
    # span 1 max 0.7 > 0.62; span 2 max 0.5 <= 0.62 but it is... not the block's best (0.7): left masked
    assert promote("hierarchical", state) == [[False, True, False, False, False, False]]
    # low 0.2: span 2's maximum 0.5 passes too
    assert promote("hierarchical", state, low_threshold=0.2) == [[False, True, False, False, True, False]]


def test_strict_comparisons_and_high_threshold():
    state = block_state([[0.62, 0.1, 0.92, 0.93]], is_mask=[[True, False, True, True]])
    # span [0]: 0.62 is not > 0.62; span [2, 3]: max 0.93; high: 0.93 > 0.92, 0.92 is not
    assert promote("hierarchical", state) == [[False, False, False, True]]
    # always the block's most confident masked position, even when nothing passes
    state = block_state([[0.1, 0.3, 0.2]])
    assert promote("hierarchical", state, threshold=1.0, low_threshold=1.0) == [[False, True, False]]


def test_ties_take_the_first_maximum_of_a_span():
    state = block_state([[0.7, 0.7, 0.7]])
    assert promote("hierarchical", state, threshold=1.0) == [[True, False, False]]


@pytest.mark.parametrize("transcript, case", cases("hierarchical"))
def test_matches_dinfer_hierarchy_decoder(transcript, case):
    """dInfer's HierarchyDecoder in its block-wise engine = `mask_logit=keep` (tests/reference/hierarchical)."""
    check_case(transcript, case)


def test_mask_logit_keep_leaves_a_chosen_mask_argmax_open():
    from workbench.authoring.properties import MASK_ID

    state = block_state([[0.95, 0.3, 0.7]], top=[[MASK_ID, 7, 7]])  # one span: its maximum 0 is MASK
    result = make_manager("hierarchical", params={"mask_logit": "keep"}).get_plugin("hierarchical").promote(state)
    assert result.positions.tolist() == [[False, False, False]] and result.fallback is False
    assert promote("hierarchical", state) == [[True, False, False]]
