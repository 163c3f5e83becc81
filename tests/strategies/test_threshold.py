"""Fast-dLLM confidence-threshold strategy: the rule, the factor variant, and parity with a reference."""

from __future__ import annotations

import pytest
from transcripts import cases, check_case
import torch

from workbench.decoding.loop import generate
from workbench.models.native import build_random_model
from workbench.decoding.registry import make_manager
from workbench.authoring.properties import make_block_state as block_state
from workbench.decoding.state import DecodeConfig


def promote(strategy, state, **params):
    return make_manager(strategy, params=params).get_plugin(strategy).promote(state).tolist()


def test_defaults():
    plugin = make_manager("threshold").get_plugin("threshold")
    assert (plugin.tau, plugin.rule, plugin.factor) == (0.95, "threshold", 1.0)


def test_threshold_rule():
    state = block_state([[0.2, 0.96, 0.5, 0.95], [0.1, 0.3, 0.2, 0.05]],
                        is_mask=[[True, True, True, False], [True, True, True, True]])
    # >= tau among masked, the masked 0.95 is not masked; row 2: only its most confident
    assert promote("threshold", state) == [[False, True, False, False], [False, True, False, False]]
    assert promote("threshold", state, tau=0.5) == [[False, True, True, False], [False, True, False, False]]


def test_factor_rule():
    # ranks: 0.99 (n=1 always), 0.7 >= 1 - 1/3, 0.6 < 1 - 1/4 = 0.75 -> stop
    state = block_state([[0.6, 0.99, 0.7, 0.1]])
    assert promote("threshold", state, rule="factor") == [[False, True, True, False]]
    # factor 2: 0.6 >= 1 - 2/4 passes, only the last rank (0.1 < 1 - 2/5) fails: Fast-dLLM then promotes all
    assert promote("threshold", state, rule="factor", factor=2.0) == [[True, True, True, True]]


def test_factor_rule_last_rank_quirk_on_hand_computed_steps():
    """Fast-dLLM's get_transfer_index_dynamic: when every open position but the last-ranked passes, the loop
    ends with top_i = M - 1 and adds one, so the failing last one is promoted too."""
    assert promote("threshold", block_state([[0.99, 0.50]]), rule="factor") == [[True, True]]  # 0.5 < 2/3
    assert promote("threshold", block_state([[0.99, 0.50, 0.40]]), rule="factor") == [[True, False, False]]
    assert promote("threshold", block_state([[0.40]]), rule="factor") == [[True]]  # one open position


def test_dinfer_margin_on_a_hand_computed_step():
    """dInfer commits conf >= min(tau, max_conf - 1e-5): below tau, everything within 1e-5 of the best."""
    state = block_state([[0.8, 0.799995, 0.79998, 0.5]])
    assert promote("threshold", state) == [[True, True, False, False]]  # 0.79998 is 2e-5 below
    assert promote("threshold", state, margin=0.0) == [[True, False, False, False]]
    assert promote("threshold", state, tau=0.6) == [[True, True, True, False]]


def test_mask_logit_keep_is_dinfer_on_a_hand_computed_step():
    """With mask_logit=keep the MASK logit stays in the softmax (process_logits leaves it) and a position whose
    argmax is MASK is never promoted; with every open top MASK nothing is promoted (no fallback)."""
    from workbench.authoring.properties import MASK_ID

    plugin = make_manager("threshold", params={"mask_logit": "keep"}).get_plugin("threshold")
    logits = torch.zeros(1, 2, 4)
    assert torch.equal(plugin.process_logits(block_state([[0.5, 0.5]]), logits.clone()), logits)  # MASK kept
    removed = make_manager("threshold").get_plugin("threshold").process_logits(block_state([[0.5, 0.5]]),
                                                                              logits.clone())
    assert torch.isneginf(removed[..., MASK_ID]).all() and not torch.isinf(removed[..., 0]).any()
    state = block_state([[0.9, 0.6, 0.3]], top=[[MASK_ID, 7, 8]])
    result = plugin.promote(state)
    assert result.positions.tolist() == [[False, True, False]] and result.fallback is False
    all_mask = block_state([[0.9, 0.6]], top=[[MASK_ID, MASK_ID]])
    assert not plugin.promote(all_mask).positions.any()


def reference_fast_dllm(model, prompt, gen_len, block, tau, margin=None):
    """Fast-dLLM threshold decoding, written plainly for one prompt (no cache, greedy): conf >= tau and
    always the argmax; with `margin`, dInfer's rule conf >= min(tau, max_conf - margin) instead.

    Masks the MASK logit before the softmax, as the workbench does by default (`mask_logit=remove`).
    """
    mask, eos = model.mask_id, model.eos_id
    x = torch.tensor([prompt + [mask] * gen_len])
    p = len(prompt)
    block_ids = torch.tensor([[0] * p + [1 + j // block for j in range(gen_len)]])
    nfe = 0
    for b in range(gen_len // block):
        lo, hi = p + b * block, p + (b + 1) * block
        end = hi if model.block_causal else x.shape[1]
        while (x[0, lo:hi] == mask).any():
            embeds = model.embedding_table()[x[:, :end]]
            valid = torch.ones(1, end, dtype=torch.bool)
            logits = model.denoise(embeds, block_ids=block_ids[:, :end], valid=valid)[0, lo:hi].float()
            nfe += 1
            logits[:, mask] = float("-inf")
            conf, top = logits.softmax(-1).max(-1)
            masked = x[0, lo:hi] == mask
            conf = torch.where(masked, conf, torch.tensor(float("-inf")))
            if margin is None:
                chosen = conf >= tau
                chosen[conf.argmax()] = True
            else:
                chosen = conf >= min(tau, float(conf.max()) - margin)
            x[0, lo:hi] = torch.where(chosen, top, x[0, lo:hi])
        if (x[0, lo:hi] == eos).any():
            x = x[:, :hi]
            break
    ids = x[0, p:].tolist()
    return (ids[:ids.index(eos) + 1] if eos in ids else ids), nfe


@pytest.mark.parametrize("block_causal", [True, False])
def test_parity_with_reference_at_defaults(block_causal):
    torch.set_num_threads(1)
    model = build_random_model(24, seed=7, hidden_size=32, num_layers=2, num_heads=2, block_causal=block_causal)
    config = DecodeConfig(block_size=4, max_new_tokens=12)
    prompts = [[5, 6, 7], [9], [10, 11, 12, 13, 14]]
    for tau in (0.95, 0.1):  # defaults, and a low tau so that several tokens are decoded per step
        for margin in (1e-5, 0.0):  # dInfer's rule (default) and a margin of 0 against Fast-dLLM's
            pm = lambda: make_manager("threshold", params={"tau": tau, "margin": margin})  # noqa: E731
            for prompt in prompts:
                ours = generate(model, [prompt], pm(), config)[0]
                ids, nfe = reference_fast_dllm(model, prompt, 12, 4, tau, margin=margin or None)
                assert (ours.ids, ours.nfe) == (ids, nfe)


@pytest.mark.parametrize("transcript, case", cases("threshold"))
def test_matches_dinfer_threshold_decoder(transcript, case):
    """dInfer's ThresholdParallelDecoder in its block-wise engine = `mask_logit=keep` (tests/reference/threshold)."""
    check_case(transcript, case)
