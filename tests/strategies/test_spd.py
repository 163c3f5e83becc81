"""SPD: the hard-refinement loop with DMax's norm-preserving hybrid inputs (Eq. 9-10)."""

from __future__ import annotations

import pytest
import torch

from plugins.embedders import hybrid
from workbench.decoding.loop import generate
from workbench.authoring.properties import ScriptedDenoiser, check_hybrid_embedding
from workbench.decoding.registry import available_strategies, hookimpl, make_manager
from workbench.decoding.state import DecodeConfig


def test_defaults_match_dmax():
    plugin = make_manager("spd").get_plugin("spd")
    assert (plugin.tau_dec, plugin.tau_acc, plugin.contiguous) == (0.5, 0.9, True)
    assert DecodeConfig(block_size=32).cap == 32


def test_hybrid_formula_by_hand():
    e_top, e_mask = torch.tensor([[3.0, 4.0]]), torch.tensor([0.0, 1.0])
    h = hybrid(e_top, e_mask, torch.tensor([0.5]))
    mixed = torch.tensor([1.5, 2.5])
    target = 0.5 * 5.0 + 0.5 * 1.0
    assert torch.allclose(h[0], mixed / (mixed.norm() + 1e-6) * target)
    check_hybrid_embedding(hybrid, e_top, e_mask, torch.tensor([0.3]))


def test_inputs_are_hybrid_at_token_positions_and_mask_elsewhere():
    states, inputs = [], []

    class Spy:
        @hookimpl
        def on_step_end(self, state):
            states.append((state.top.clone(), state.conf.clone(), state.is_mask.clone()))

    class Capture(ScriptedDenoiser):
        def denoise(self, inputs_embeds, *, block_ids, valid):
            inputs.append(inputs_embeds[:, -4:].clone())
            return super().denoise(inputs_embeds, block_ids=block_ids, valid=valid)

    model = Capture(16, eos_bias=-50.0, seed=2, scale=1.0)
    pm = make_manager("spd", params={"tau_dec": 0.3, "tau_acc": 1.0}, extra_plugins=[Spy()])
    generate(model, [[5]], pm, DecodeConfig(block_size=4, max_new_tokens=4))
    top, conf, is_mask = states[0]
    expected = torch.where(is_mask[..., None], model.mask_embedding(),
                           hybrid(model.table[top], model.mask_embedding(), conf))
    assert torch.equal(inputs[1], expected)
    assert torch.equal(inputs[0], model.mask_embedding().expand_as(inputs[0]))


def test_spd_differs_from_hard_only_in_embed_state():
    infos = {i.name: i for i in available_strategies()}
    # SPD has the parameters of hard plus `open_input`, what its hybrid mixes toward (e_mask by default)
    assert infos["spd"].params == {**infos["hard"].params, "open_input": "auto"}
    model = ScriptedDenoiser(16, eos_bias=-50.0, seed=2, scale=1.0)
    config = DecodeConfig(block_size=4, max_new_tokens=8)
    from plugins.embedders import HardEmbedder

    as_hard = generate(model, [[5], [6, 7]], make_manager("spd", extra_plugins=[HardEmbedder()]), config)
    hard = generate(model, [[5], [6, 7]], make_manager("hard"), config)
    assert [r.ids for r in as_hard] == [r.ids for r in hard]


def test_uniform_state_canvas_needs_an_explicit_open_input():
    """On a uniform-state canvas SPD refuses by default (no silent substitute for e_mask); `mean` mixes toward
    the mean noise embedding, and the open positions are fed their noise tokens either way."""
    from workbench.decoding.contract import PluginRuntimeError

    model = ScriptedDenoiser(16, eos_bias=-50.0, seed=2, scale=1.0)
    config = DecodeConfig(block_size=4, max_new_tokens=8, noise="uniform")
    with pytest.raises(PluginRuntimeError, match=r"plugin 'spd' raised ModelInputsDenied.*open_input=mean"):
        generate(model, [[5]], make_manager("spd"), config)
    results = generate(model, [[5], [6, 7]], make_manager("spd", params={"open_input": "mean"}), config)
    assert all(len(r.ids) == 8 and model.mask_id not in r.ids for r in results)
    absorbing = generate(model, [[5], [6, 7]], make_manager("spd"), DecodeConfig(block_size=4, max_new_tokens=8))
    forced = generate(model, [[5], [6, 7]], make_manager("spd", params={"open_input": "mask"}),
                      DecodeConfig(block_size=4, max_new_tokens=8))
    assert [r.ids for r in absorbing] == [r.ids for r in forced]  # auto is e_mask on an absorbing canvas
