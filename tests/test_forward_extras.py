"""The forward's extras: WINO's shadow block (`needs_shadow`), beside the canvas view (`canvas_view`, what
KLASS reads across blocks).

The shadow block must be exactly the call WINO's own code makes (same inputs, position ids and attention
mask: bitwise equal logits), cost one counted forward, give the same decode under the exact prefix cache as
uncached, and be refused, naming the plugin, where it cannot be appended. With both asked for, the canvas view
must still be the forward's own logits at the positions after the block.
"""

from __future__ import annotations

import pytest
import torch

from workbench import BlockState, generate, hookimpl, make_manager
from workbench.authoring.properties import OracleDenoiser, ScriptedDenoiser
from workbench.decoding.cache import CanvasRunner, ShadowUnavailable
from workbench.decoding.state import DecodeConfig
from workbench.models.masks import decode_attention_mask, position_ids_from_valid
from workbench.models.native import build_random_model

MASK = 1


def native(block_causal: bool, dtype=torch.float64, seed: int = 4):
    return build_random_model(24, seed=seed, dtype=dtype, hidden_size=32, num_layers=2, num_heads=2,
                              initializer_range=0.4, block_causal=block_causal)


class Recorder:
    """Keeps what the forward's extras held at every step (and asks for the shadow and the canvas view)."""

    needs_shadow = True
    canvas_view = True

    def __init__(self):
        self.shadow, self.canvas = [], []

    @hookimpl
    def on_step_end(self, state: BlockState):
        self.shadow.append(state.shadow_logits.clone())
        self.canvas.append(state.canvas_logits.clone() if state.canvas_view else None)


def wino_mask(total: int, lo: int, length: int) -> torch.Tensor:
    """The attention mask `decoding_wino` builds (LLaDA/decoding.py), written out as it does, (1, 1, T+L, T+L)."""
    size = total + length
    mask = torch.ones(1, 1, size, size, dtype=torch.bool)
    mask[:, :, :, -length:] = False
    mask[:, :, -length:, -length:] = True
    mask[:, :, -length:, lo:lo + length] = ~torch.eye(length, dtype=torch.bool)
    return mask


def test_the_shadow_block_is_winos_own_call():
    model = native(block_causal=False, dtype=torch.float32)
    ids = torch.tensor([[5, 9, 7, 3, 11, MASK, 13, MASK, MASK, MASK, MASK, MASK]])  # prompt 3, block [3, 7)
    lo, hi, length = 3, 7, 4
    valid = torch.ones_like(ids, dtype=torch.bool)
    runner = CanvasRunner(model)
    runner.start_block(ids, valid, torch.zeros_like(ids), lo, hi)
    block = model.embedding_table()[ids[:, lo:hi]]
    got = runner.forward(block, torch.ones(1, dtype=torch.bool), shadow=True)  # (1, 2L, V)
    wide = torch.cat([ids, torch.full((1, length), MASK)], dim=1)
    positions = torch.cat([torch.arange(12), torch.arange(lo, hi)])[None]
    want = model(inputs_embeds=model.embedding_table()[wide], position_ids=positions,
                 attn_mask=wino_mask(12, lo, length))
    assert torch.equal(got[:, :length], want[:, lo:hi])  # the canvas's logits: WINO's drafts
    assert torch.equal(got[:, length:], want[:, -length:])  # the shadow's: WINO's verification
    assert not torch.equal(got[:, length:], got[:, :length])  # position j hidden changes what it predicts


def test_shadow_is_one_counted_forward_and_cache_exact():
    """Under the exact prefix cache of a block-causal model the shadow's keys sit after the block; tokens,
    forwards and the shadow logits equal the uncached decode's (float64)."""
    model = native(block_causal=True)
    prompts = [[5, 6, 7], [9], [10, 11, 12, 13, 14]]
    runs = {}
    for cache in ("none", "prefix"):
        recorder = Recorder()
        config = DecodeConfig(block_size=4, max_new_tokens=12, cache=cache)
        results = generate(model, prompts, make_manager("wino", extra_plugins=[recorder]), config)
        runs[cache] = (results, recorder)
    (plain, rec_plain), (cached, rec_cached) = runs["none"], runs["prefix"]
    assert [(r.ids, r.nfe, r.block_steps) for r in cached] == [(r.ids, r.nfe, r.block_steps) for r in plain]
    for a, b in zip(rec_plain.shadow, rec_cached.shadow):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    assert all(c is None for c in rec_plain.canvas)  # a block-causal forward gives no canvas view


def test_shadow_costs_one_forward_per_step():
    class Counting:
        def __init__(self, inner):
            self.inner, self.calls = inner, 0

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def denoise_masked(self, inputs_embeds, **kw):
            self.calls += 1
            return self.inner.denoise_masked(inputs_embeds, **kw)

    model = Counting(native(block_causal=False))
    (result,) = generate(model, [[5, 6, 7]], make_manager("wino"), DecodeConfig(block_size=4, max_new_tokens=8,
                                                                                  cache="none"))
    assert result.nfe == model.calls == sum(result.block_steps)


@pytest.mark.parametrize("case", ["dual cache", "uniform canvas", "no explicit-mask forward"])
def test_shadow_refused_where_it_cannot_be_appended(case):
    model, config = native(block_causal=False), DecodeConfig(block_size=4, max_new_tokens=8)
    if case == "dual cache":
        config = DecodeConfig(block_size=4, max_new_tokens=8, cache="dual")
    elif case == "uniform canvas":
        config = DecodeConfig(block_size=4, max_new_tokens=8, noise="uniform")
    else:
        class CanvasOnly(OracleDenoiser):
            """A denoiser with only the canvas forward (as a model adapter may be)."""
            denoise_masked = None

        model = CanvasOnly(list(range(4, 16)), vocab_size=16)
    with pytest.raises(ShadowUnavailable, match="'wino' needs the shadow block"):
        generate(model, [[5, 6]], make_manager("wino"), config)


def test_scripted_denoiser_explicit_layout_is_its_own_rule():
    """The check-plugin fake answers the shadow layout with the same rule as its canvas forward."""
    model = ScriptedDenoiser(16, seed=3)
    x = model.embedding_table()[torch.tensor([[4, 5, 6, 1, 1]])]
    valid = torch.ones(1, 5, dtype=torch.bool)
    block_ids = torch.tensor([[0, 0, 1, 1, 2]])
    want = model.denoise(x, block_ids=block_ids, valid=valid)
    got = model.denoise_masked(x, position_ids=position_ids_from_valid(valid),
                               attn_mask=decode_attention_mask(block_ids, valid, False))
    assert torch.equal(got, want)


def test_with_the_shadow_the_canvas_view_is_still_the_forwards_own_logits():
    model = native(block_causal=False)
    recorder = Recorder()
    prompt, config = [5, 6, 7], DecodeConfig(block_size=4, max_new_tokens=12, cache="none")
    generate(model, [prompt], make_manager("threshold", extra_plugins=[recorder]), config)
    # The first forward of block 1: the canvas is the prompt then 12 masks; its logits at canvas positions
    # [7, 11) (generated positions [4, 8), the next block) are what KLASS reads across blocks.
    ids = torch.tensor([prompt + [MASK] * 12])
    valid = torch.ones_like(ids, dtype=torch.bool)
    full = model.denoise(model.embedding_table()[ids], block_ids=torch.zeros_like(ids), valid=valid)
    torch.testing.assert_close(recorder.canvas[0][:, 4:8], full[:, 7:11].float())  # kept in float32
    assert all(c.shape[1] == 12 for c in recorder.canvas)  # every generated position, every step


def test_extras_are_not_readable_unless_asked():
    seen = []

    class Reader:
        @hookimpl
        def on_step_end(self, state):
            with pytest.raises(AttributeError, match="needs_shadow"):
                state.shadow_logits  # noqa: B018
            with pytest.raises(AttributeError, match="canvas_view"):
                state.canvas_logits  # noqa: B018
            seen.append(state.step)

    generate(native(block_causal=True), [[5]], make_manager("threshold", extra_plugins=[Reader()]),
             DecodeConfig(block_size=4, max_new_tokens=4))
    assert seen
