"""The block loop: hook order, canvas layout, NFE counting, active batch, EOS, cap, sampling, runner seam."""

from __future__ import annotations

import pytest
import torch

from workbench.decoding.contract import PluginRuntimeError
from workbench.decoding.loop import CanvasRunner, generate
from workbench.authoring.properties import EOS_ID, MASK_ID, OracleDenoiser, ScriptedDenoiser
from workbench.decoding.registry import hookimpl, make_manager
from workbench.decoding.state import DecodeConfig


class Recorder:
    """Records every hook call; answers no decision hook (returns None), so the strategy decides."""

    def __init__(self):
        self.calls: list[str] = []

    @hookimpl
    def fill_block(self, state):
        self.calls.append("fill_block")

    @hookimpl
    def guidance(self, state):
        self.calls.append("guidance")

    @hookimpl
    def embed_state(self, state, model):
        self.calls.append("embed_state")

    @hookimpl
    def process_logits(self, state, logits):
        self.calls.append("process_logits")

    @hookimpl
    def revoke(self, state):
        self.calls.append("revoke")

    @hookimpl
    def promote(self, state):
        self.calls.append("promote")

    @hookimpl
    def converge(self, state):
        self.calls.append("converge")

    @hookimpl
    def commit(self, state):
        self.calls.append("commit")

    @hookimpl
    def on_step_end(self, state):
        self.calls.append("on_step_end")

    @hookimpl
    def on_block_end(self, state, committed):
        self.calls.append("on_block_end")

    @hookimpl
    def on_generation_end(self, results):
        self.calls.append("on_generation_end")


class ShapeSpy:
    """Wraps a denoiser and records the (N, T) of every forward."""

    def __init__(self, inner):
        self.inner = inner
        self.shapes: list[tuple[int, int]] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def denoise(self, inputs_embeds, *, block_ids, valid):
        self.shapes.append(tuple(inputs_embeds.shape[:2]))
        return self.inner.denoise(inputs_embeds, block_ids=block_ids, valid=valid)


def test_exact_hook_order_over_two_blocks():
    recorder = Recorder()
    model = ScriptedDenoiser(16, eos_bias=-50.0, seed=3)
    # tau = 1: one token per step, so a block of 2 takes two steps and only the second commits.
    pm = make_manager("threshold", params={"tau": 1.0}, extra_plugins=[recorder])
    results = generate(model, [[5, 6, 7]], pm, DecodeConfig(block_size=2, max_new_tokens=4))
    assert results[0].block_steps == [2, 2]
    step = ["embed_state", "process_logits", "revoke", "promote", "converge", "on_step_end"]
    final = ["embed_state", "process_logits", "revoke", "promote", "converge", "commit", "on_step_end"]
    block = ["fill_block", "guidance"] + step + final + ["on_block_end"]
    assert recorder.calls == block + block + ["on_generation_end"]


@pytest.mark.parametrize("block_causal", [True, False])
def test_canvas_layout(block_causal):
    spy = ShapeSpy(ScriptedDenoiser(16, eos_bias=-50.0, seed=0, block_causal=block_causal))
    config = DecodeConfig(block_size=4, max_new_tokens=12)
    generate(spy, [[5, 6], [7, 8, 9]], make_manager("threshold", params={"tau": 0.0}), config)
    # tau = 0 promotes everything: one forward per block; prompt width 3 (left padding).
    if block_causal:
        assert spy.shapes == [(2, 7), (2, 11), (2, 15)]  # only up to the current block
    else:
        assert spy.shapes == [(2, 15)] * 3  # future blocks present as masks


def test_left_padding_and_block_ids_reach_the_model():
    seen = {}

    class Spy(ScriptedDenoiser):
        def denoise(self, inputs_embeds, *, block_ids, valid):
            seen.setdefault("block_ids", block_ids.clone())
            seen.setdefault("valid", valid.clone())
            return super().denoise(inputs_embeds, block_ids=block_ids, valid=valid)

    generate(Spy(16, eos_bias=-50.0), [[5], [6, 7, 8]], make_manager("threshold", params={"tau": 0.0}),
             DecodeConfig(block_size=2, max_new_tokens=4))
    assert seen["valid"].tolist() == [[False, False, True] + [True] * 4, [True] * 7]
    assert seen["block_ids"][0].tolist() == [0, 0, 0, 1, 1, 2, 2]


def test_finished_rows_leave_the_batch_and_nfe_counts_per_row():
    spy = ShapeSpy(ScriptedDenoiser(16, eos_bias=-50.0, seed=0))

    class SlowRowZero:
        """Row 0 of the first block converges only at the cap; the others at once."""

        @hookimpl
        def converge(self, state):
            out = torch.ones(state.batch_size, dtype=torch.bool)
            out[state.rows == 0] = False
            return out

    pm = make_manager("threshold", extra_plugins=[SlowRowZero()])
    results = generate(spy, [[5, 6], [7, 8], [9, 10]], pm, DecodeConfig(block_size=3, max_new_tokens=3))
    assert [n for n, _ in spy.shapes] == [3, 1, 1]
    assert [r.nfe for r in results] == [3, 1, 1]
    assert [r.block_steps for r in results] == [[3], [1], [1]]


def test_row_stops_after_the_block_with_eos():
    # Position ids 3.. hold the answer; EOS at generated position 5 (block 2 of size 4).
    sequence = [5, 6, 7, 8, 9, 10, 11, 12, EOS_ID, 13, 14, 15, 4, 4, 4, 4]
    oracle = OracleDenoiser(sequence, 16)
    results = generate(oracle, [sequence[:3], sequence[:1]], make_manager("threshold"),
                       DecodeConfig(block_size=4, max_new_tokens=12))
    assert results[0].ids == [8, 9, 10, 11, 12, EOS_ID]
    assert results[0].tokens == 5 and results[0].block_steps == [1, 1] and results[0].nfe == 2
    assert results[1].ids == sequence[1:9] and results[1].block_steps == [1, 1]  # EOS ends block 2


def test_last_block_shorter_when_not_a_multiple():
    oracle = OracleDenoiser(list(range(3, 16)), 16)
    result = generate(oracle, [[3, 4]], make_manager("spd"), DecodeConfig(block_size=4, max_new_tokens=6))[0]
    assert result.ids == [5, 6, 7, 8, 9, 10] and result.block_steps == [1, 1]


def test_cap_ends_a_block_that_never_converges():
    class Never:
        @hookimpl
        def converge(self, state):
            return torch.zeros(state.batch_size, dtype=torch.bool)

    config = DecodeConfig(block_size=4, max_new_tokens=8, max_forwards_per_block=6)
    model = ScriptedDenoiser(16, eos_bias=-50.0)
    result = generate(model, [[5]], make_manager("spd", extra_plugins=[Never()]), config)[0]
    assert result.block_steps == [6, 6] and MASK_ID not in result.ids


def test_cap_commits_remaining_masks_with_their_top():
    class PromoteNothing:
        @hookimpl
        def promote(self, state):
            return torch.zeros_like(state.is_mask)

    # The core fallback promotes one per step; a cap of 2 on a block of 4 leaves 2 masks for commit.
    config = DecodeConfig(block_size=4, max_new_tokens=4, max_forwards_per_block=2)
    model = ScriptedDenoiser(16, eos_bias=-50.0)
    result = generate(model, [[5]], make_manager("threshold", extra_plugins=[PromoteNothing()]), config)[0]
    assert result.block_steps == [2] and MASK_ID not in result.ids


def test_temperature_sampling_is_seeded():
    model, prompts = ScriptedDenoiser(16, eos_bias=-50.0, scale=0.5), [[5, 6], [7]]
    runs = {seed: [generate(model, prompts, make_manager("threshold"),
                            DecodeConfig(block_size=4, max_new_tokens=8, temperature=1.0, seed=seed))[0].ids
                   for _ in range(2)] for seed in (0, 1)}
    assert runs[0][0] == runs[0][1] and runs[1][0] == runs[1][1]
    assert runs[0][0] != runs[1][0]


def test_probs_only_when_a_plugin_asks():
    seen = []

    class WantsProbs:
        needs_probs = True

        @hookimpl
        def on_step_end(self, state):
            seen.append(tuple(state.probs.shape))

    class Plain:
        @hookimpl
        def on_step_end(self, state):
            seen.append(state.has_probs)

    class Forgot:
        """Reads state.probs without asking: the error says what to set, naming the plugin."""

        @hookimpl
        def on_step_end(self, state):
            state.probs.topk(2)

    config = DecodeConfig(block_size=2, max_new_tokens=2)
    model = ScriptedDenoiser(16, eos_bias=-50.0)
    for plugin in (Plain(), WantsProbs()):
        generate(model, [[5]], make_manager("threshold", params={"tau": 0.0}, extra_plugins=[plugin]), config)
    assert seen == [False, (1, 2, 16)]
    with pytest.raises(PluginRuntimeError, match=r"plugin 'Forgot' raised AttributeError in hook 'on_step_end'.*"
                                                 r"needs_probs = True"):
        generate(model, [[5]], make_manager("threshold", extra_plugins=[Forgot()]), config)


def test_runner_seam_can_be_replaced():
    class CountingRunner(CanvasRunner):
        """Pretends to encode the context in a forward of its own at each block start (one per row)."""

        separate_prefill = True

        def start_block(self, ids, valid, block_ids, lo, hi):
            super().start_block(ids, valid, block_ids, lo, hi)
            return 1

    oracle = OracleDenoiser(list(range(3, 16)), 16)
    config = DecodeConfig(block_size=4, max_new_tokens=8)
    plain = generate(oracle, [[3]], make_manager("threshold"), config)[0]
    cached = generate(oracle, [[3]], make_manager("threshold"), config, runner=CountingRunner(oracle))[0]
    assert cached.ids == plain.ids and cached.nfe == plain.nfe
    # Context forwards count in nfe_total only: the folded prefill as one, or each separate encoding.
    assert plain.nfe_total == plain.nfe + 1 and cached.nfe_total == cached.nfe + 2


def test_wrappers_work_on_decision_and_observer_hooks():
    calls = []

    class Timing:
        @hookimpl(wrapper=True)
        def promote(self, state):
            result = yield
            calls.append(("promote", int(result.sum())))
            return result

        @hookimpl(wrapper=True)
        def on_step_end(self, state):
            calls.append("step")
            return (yield)

    oracle = OracleDenoiser(list(range(3, 16)), 16)
    result = generate(oracle, [[3]], make_manager("threshold", extra_plugins=[Timing()]),
                      DecodeConfig(block_size=4, max_new_tokens=4))[0]
    assert result.ids == [4, 5, 6, 7]
    assert calls == [("promote", 4), "step"]


def test_mask_token_is_never_predicted():
    class LovesMask(ScriptedDenoiser):
        def denoise(self, inputs_embeds, *, block_ids, valid):
            logits = super().denoise(inputs_embeds, block_ids=block_ids, valid=valid)
            logits[..., MASK_ID] = 1e4
            return logits

    config = DecodeConfig(block_size=4, max_new_tokens=8)
    result = generate(LovesMask(16, eos_bias=-50.0), [[5]], make_manager("spd"), config)[0]
    assert MASK_ID not in result.ids


def test_decode_config_validation():
    for bad in (dict(block_size=0), dict(max_new_tokens=-1), dict(temperature=-0.1),
                dict(max_forwards_per_block=0)):
        with pytest.raises(ValueError):
            DecodeConfig(**bad)
    assert DecodeConfig(block_size=8).cap == 8
    assert DecodeConfig(block_size=4, max_new_tokens=10).block_spans() == [(0, 4), (4, 8), (8, 10)]
