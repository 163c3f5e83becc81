"""Hard-token refinement: contiguous promotion, re-predicted tokens, stable-or-confident convergence."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.convergence import confident, stable, stable_or_confident
from plugins.promotion import contiguous_prefix
from workbench.decoding.loop import generate
from workbench.authoring.properties import ScriptedDenoiser
from workbench.authoring.properties import make_block_state as block_state
from workbench.decoding.registry import decision_providers, hookimpl, make_manager
from workbench.decoding.state import DecodeConfig


def promote(strategy, state, **params):
    return make_manager(strategy, params=params).get_plugin(strategy).promote(state).tolist()


def test_defaults():
    plugin = make_manager("hard").get_plugin("hard")
    assert (plugin.tau_dec, plugin.tau_acc, plugin.contiguous) == (0.5, 0.9, True)


def test_contiguous_prefix_from_the_leftmost_mask():
    state = block_state([[0.9, 0.6, 0.4, 0.8]], is_mask=[[False, True, True, True]])
    assert promote("hard", state) == [[False, True, False, False]]
    state = block_state([[0.9, 0.3, 0.9, 0.8]], is_mask=[[False, True, True, True]])
    assert promote("hard", state) == [[False, True, False, False]]  # empty run -> leftmost alone
    state = block_state([[0.9, 0.6, 0.7, 0.8]], is_mask=[[False, True, True, True]])
    assert promote("hard", state) == [[False, True, True, True]]


def test_non_contiguous_variant():
    state = block_state([[0.9, 0.3, 0.9, 0.8]], is_mask=[[False, True, True, True]])
    assert promote("hard", state, contiguous=False) == [[False, False, True, True]]
    state = block_state([[0.9, 0.3, 0.2, 0.1]], is_mask=[[False, True, True, True]])
    assert promote("hard", state, contiguous=False) == [[False, True, False, False]]


def test_convergence_rules():
    state = block_state([[0.95, 0.91]], is_mask=[[False, True]])
    assert stable_or_confident(state, 0.9).tolist() == [True]  # (b): all active conf >= tau_acc
    state = block_state([[0.95, 0.5]], is_mask=[[False, False]])
    state.prev_top = state.top.clone()
    assert stable_or_confident(state, 0.9).tolist() == [True]  # (a): nothing changed, nothing promoted
    state.promoted = torch.tensor([[False, True]])
    assert stable_or_confident(state, 0.9).tolist() == [False]  # a promotion is a change
    state.promoted = torch.zeros_like(state.promoted)
    state.top = torch.tensor([[7, 8]])
    assert stable_or_confident(state, 0.9).tolist() == [False]  # a revised token is a change


def test_token_positions_are_revised_and_fed_as_hard_embeddings():
    model = ScriptedDenoiser(16, eos_bias=-50.0, seed=5, scale=1.0)
    seen = []

    class Spy:
        @hookimpl
        def on_step_end(self, state):
            seen.append((state.top.clone(), state.is_mask.clone()))

    inputs = []

    class Capture(ScriptedDenoiser):
        def denoise(self, inputs_embeds, *, block_ids, valid):
            inputs.append(inputs_embeds[:, -4:].clone())
            return super().denoise(inputs_embeds, block_ids=block_ids, valid=valid)

    model = Capture(16, eos_bias=-50.0, seed=5, scale=1.0)
    pm = make_manager("hard", params={"tau_dec": 0.0, "tau_acc": 1.0}, extra_plugins=[Spy()])
    result = generate(model, [[5]], pm, DecodeConfig(block_size=4, max_new_tokens=4))[0]
    assert result.block_steps[0] >= 2  # tau_dec 0 promotes all at step 1; (a) needs a confirming forward
    top1, _ = seen[0]
    assert torch.equal(inputs[1], model.table[top1])  # step 2 input: E(top) of every token position
    assert result.ids == seen[-1][0][0].tolist()  # commit = current tops


def test_providers():
    providers = decision_providers(make_manager("hard"))
    # hard answers process_logits too: its mask_logit rule (remove by default, as the core's default)
    assert {providers[h] for h in ("embed_state", "process_logits", "promote", "converge", "commit")} == {"hard"}
    assert {providers[h] for h in ("fill_block", "revoke")} == {"core-defaults"}


# -- the vectorised rules against per-row Python references, on random states ------------------------------

ROWS = st.integers(1, 4).flatmap(lambda b: st.integers(1, 8).flatmap(lambda n: st.tuples(
    st.lists(st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), min_size=n, max_size=n), min_size=b, max_size=b),
    st.lists(st.lists(st.booleans(), min_size=n, max_size=n), min_size=b, max_size=b),
    st.lists(st.booleans(), min_size=b, max_size=b),  # done rows
    st.lists(st.lists(st.booleans(), min_size=n, max_size=n), min_size=b, max_size=b),  # top changed
)))


def random_state(rows):
    conf, is_mask, done, changed = rows
    state = block_state(conf, is_mask=is_mask)
    state.done = torch.tensor(done)
    state.prev_top = torch.where(torch.tensor(changed), 8, state.top)
    return state


def reference_contiguous(conf, open_, tau):
    out = [False] * len(conf)
    if True in open_:
        first = open_.index(True)
        out[first] = True  # the leftmost is always taken
        j = first
        while j < len(conf) and open_[j] and conf[j] >= tau:
            out[j] = True
            j += 1
    return out


@settings(max_examples=200, deadline=None)
@given(ROWS, st.sampled_from([0.0, 0.5, 0.75, 1.0]))  # exact in float32
def test_contiguous_prefix_matches_reference(rows, tau):
    state = random_state(rows)
    expected = [reference_contiguous(c, o, tau) for c, o in zip(state.conf.tolist(), state.open_masks.tolist())]
    assert contiguous_prefix(state, tau).tolist() == expected


@settings(max_examples=200, deadline=None)
@given(ROWS, st.booleans(), st.sampled_from([0.5, 0.75]))
def test_convergence_rules_match_reference(rows, promoted_any, tau_acc):
    state = random_state(rows)
    state.promoted = torch.zeros_like(state.is_mask)
    state.promoted[:, 0] = promoted_any
    for i in range(state.batch_size):
        tokens = [not m for m in state.is_mask[i].tolist()]
        unchanged = all(t == p or not tok for t, p, tok in
                        zip(state.top[i].tolist(), state.prev_top[i].tolist(), tokens))
        assert bool(stable(state)[i]) == (unchanged and not promoted_any)
        assert bool(confident(state, tau_acc)[i]) == all(c >= tau_acc for c in state.conf[i].tolist())


def test_fill_at_cap_switch_on_a_hand_computed_state():
    """A block that ends with open positions, at the cap or converged by the confidence rule: they get their
    top (default) or stay masked (fill_at_cap=false, DMax's, whatever ended the block)."""
    from workbench.authoring.properties import MASK_ID, make_block_state

    state = make_block_state([[0.9, 0.3, 0.2], [0.9, 0.95, 0.95]], is_mask=[[False, True, True], [False, True, True]],
                             top=[[7, 8, 9], [7, 8, 9]])
    state.converged = torch.tensor([False, True])  # row 0 ends at the cap, row 1 converged (all >= tau_acc)
    filled = make_manager("hard").get_plugin("hard").commit(state)
    kept = make_manager("hard", params={"fill_at_cap": False}).get_plugin("hard").commit(state)
    assert filled.tolist() == [[7, 8, 9], [7, 8, 9]]
    assert kept.tolist() == [[7, MASK_ID, MASK_ID], [7, MASK_ID, MASK_ID]]


# Issue 21's example (shipped oput model, prompt `57466307=`, spd, tau_dec 0.95, block 1 step 4): positions
# 0-2 are token positions, 3-7 open; DMax's `decode_uniform` promotes position 3 alone (0.942 < 0.95 breaks
# the run, so the leftmost is the fallback), every position is >= 0.9, so it stops: [10, 7, 4, 11, M, M, M, M].
DMAX_STEP_CONF = [[0.991, 0.913, 0.999, 0.942, 0.999, 0.984, 1.0, 0.95]]
DMAX_STEP_TOP = [[10, 7, 4, 11, 5, 4, 11, 9]]


@pytest.mark.parametrize("strategy", ["hard", "spd"])
def test_dmax_confidence_stop_with_open_positions_on_a_hand_built_step(strategy):
    """One step through the strategy's own hooks, in the core's order (promote, the core's update, converge,
    commit): with the reference switches the positions DMax never promoted stay MASK."""
    from workbench.authoring.properties import MASK_ID, make_block_state

    def step(params):
        plugin = make_manager(strategy, params={"tau_dec": 0.95, **params}).get_plugin(strategy)
        state = make_block_state(DMAX_STEP_CONF, is_mask=[[False] * 3 + [True] * 5], top=DMAX_STEP_TOP)
        state.prev_top = state.top.clone()
        promoted = plugin.promote(state)
        assert promoted.tolist() == [[False, False, False, True, False, False, False, False]]
        state.promoted, state.fallback = promoted, torch.zeros_like(promoted)
        state.ids = torch.where(promoted, state.top, state.ids)  # what the core does with a promotion
        state.is_mask = state.is_mask & ~promoted
        state.converged = plugin.converge(state)
        assert state.converged.tolist() == [True]  # (b): every active position >= tau_acc 0.9
        return plugin.commit(state).tolist()

    assert step({"mask_logit": "keep", "fill_at_cap": False}) == [[10, 7, 4, 11] + [MASK_ID] * 4]
    assert step({}) == DMAX_STEP_TOP  # the default fills the open positions with their tops


class FixedConfidence:
    """A block-causal denoiser whose block position j predicts DMAX_STEP_TOP[0][j] with probability
    DMAX_STEP_CONF[0][j] (the rest spread evenly over the other ids, MASK included), whatever its input."""

    vocab_size, block_causal, mask_id, eos_id, pad_id = 16, True, 1, 2, 0

    def __init__(self):
        self.table = torch.randn(self.vocab_size, 8, generator=torch.Generator().manual_seed(0))

    def embedding_table(self):
        return self.table

    def mask_embedding(self):
        return self.table[self.mask_id]

    def denoise(self, inputs_embeds, *, block_ids, valid):
        n, length = block_ids.shape
        p = torch.tensor(DMAX_STEP_CONF[0], dtype=torch.float64)
        probs = ((1 - p) / (self.vocab_size - 1))[:, None].expand(8, self.vocab_size).clone()
        probs.scatter_(1, torch.tensor(DMAX_STEP_TOP[0])[:, None], p[:, None])
        logits = probs.log().float()  # (8, V)
        # A block-causal forward ends at its block's end: align the pattern on the last 8 positions.
        return logits[(torch.arange(length) - length) % 8].expand(n, length, self.vocab_size)


@pytest.mark.parametrize("strategy", ["hard", "spd"])
def test_dmax_confidence_stop_leaves_masks_in_the_output_and_reports_them(strategy):
    """Through the loop: step 1 promotes position 0 (0.913 breaks the run), every position is >= 0.9, so the
    block converges at once; DMax's switches leave the 7 other positions masked and the core counts them."""
    from workbench.authoring.properties import MASK_ID

    config = DecodeConfig(block_size=8, max_new_tokens=8)
    reference = {"tau_dec": 0.95, "mask_logit": "keep", "fill_at_cap": False}
    kept = generate(FixedConfidence(), [[5, 6]], make_manager(strategy, params=reference), config)[0]
    assert kept.ids == [10] + [MASK_ID] * 7 and kept.extras["unfilled"] == 7 and kept.nfe == 1
    filled = generate(FixedConfidence(), [[5, 6]], make_manager(strategy, params={"tau_dec": 0.95}), config)[0]
    assert filled.ids == DMAX_STEP_TOP[0] and "unfilled" not in filled.extras and filled.nfe == 1


def test_fill_at_cap_false_leaves_masks_in_the_output_and_reports_them():
    from workbench.authoring.properties import MASK_ID

    model = ScriptedDenoiser(16, eos_bias=-50.0, seed=2, scale=0.3)
    config = DecodeConfig(block_size=4, max_new_tokens=8, max_forwards_per_block=1)  # one forward: one token
    result = generate(model, [[5]], make_manager("hard", params={"tau_dec": 1.0, "fill_at_cap": False}), config)[0]
    assert result.ids.count(MASK_ID) == result.extras["unfilled"] == 6  # 3 of 4 per block left masked
    filled = generate(model, [[5]], make_manager("hard", params={"tau_dec": 1.0}), config)[0]
    assert MASK_ID not in filled.ids and "unfilled" not in filled.extras


def test_mask_logit_keep_lets_mask_be_a_top():
    """DMax keeps the MASK logit: a model that favours MASK then has MASK as the top of open positions."""
    from workbench.authoring.properties import MASK_ID

    class LovesMask(ScriptedDenoiser):
        def denoise(self, inputs_embeds, *, block_ids, valid):
            logits = super().denoise(inputs_embeds, block_ids=block_ids, valid=valid)
            logits[..., MASK_ID] += 50.0
            return logits

    config = DecodeConfig(block_size=4, max_new_tokens=4)
    model = LovesMask(16, eos_bias=-50.0)
    kept = generate(model, [[5]], make_manager("hard", params={"mask_logit": "keep"}), config)[0]
    removed = generate(model, [[5]], make_manager("hard"), config)[0]
    assert MASK_ID in kept.ids and kept.extras["unfilled"] == kept.ids.count(MASK_ID)
    assert MASK_ID not in removed.ids
