"""Every hook is documented as STYLE.md asks and has a test here (`test_hook_<name>`)."""

from __future__ import annotations

import inspect
import sys

import pytest
import torch

from workbench.decoding import hookspecs
from workbench.decoding.loop import generate
from workbench.authoring.properties import EOS_ID, MASK_ID, OracleDenoiser, ScriptedDenoiser
from workbench.decoding.registry import (
    ALL_HOOKS, DECISION_HOOKS, OBSERVER_HOOKS, decision_providers, hookimpl, make_manager,
)
from workbench.models.native import build_random_model
from workbench.decoding.state import FREE, DecodeConfig, Guidance, ModelInputsDenied, RowResult

CONFIG = DecodeConfig(block_size=4, max_new_tokens=8)
SPECS = {name: fn for name, fn in vars(hookspecs).items()
         if inspect.isfunction(fn) and hasattr(fn, "workbench_spec")}


def quiet_model(**kw):
    return ScriptedDenoiser(16, eos_bias=-50.0, **kw)


def test_every_hook_has_a_documented_signature_and_a_test():
    assert set(SPECS) == set(ALL_HOOKS)
    tests = {name for name in vars(sys.modules[__name__]) if name.startswith("test_hook_")}
    for name, fn in SPECS.items():
        assert f"test_hook_{name}" in tests, f"hook {name} has no test"
        doc = inspect.getdoc(fn)
        assert doc, f"hook {name} has no docstring"
        summary, _, body = doc.partition("\n\n")
        assert "\n" not in summary and summary.endswith("."), f"{name}: one-line summary first"
        assert "Called by the core once per" in body, f"{name}: say who calls it and when"
        for param in inspect.signature(fn).parameters:
            assert f"    {param}:" in body, f"{name}: parameter {param} undocumented"
        assert "Returns:" in body and "Default:" in body
        firstresult = fn.workbench_spec["firstresult"]
        assert firstresult == (name in DECISION_HOOKS)
        if firstresult:
            assert "Stops at first non-None result." in body and "Enforced:" in body
            assert body.index("Returns:") < body.index("Default:")
        else:
            assert "every implementation is called" in body
    assert "Per block" in hookspecs.__doc__ and all(h in hookspecs.__doc__ for h in ALL_HOOKS)


def test_hookspecs_module_holds_only_specs():
    public = {n for n, v in vars(hookspecs).items() if inspect.isfunction(v) and not n.startswith("_")}
    assert public == set(ALL_HOOKS) and set(OBSERVER_HOOKS) | set(DECISION_HOOKS) == set(ALL_HOOKS)


def test_hook_embed_state():
    calls = []

    class Zeros:
        @hookimpl
        def embed_state(self, state, model):
            calls.append((state.block_index, state.step))
            return torch.zeros(state.batch_size, state.length, model.embedding_table().shape[1],
                               dtype=model.embedding_table().dtype)

    oracle = OracleDenoiser(list(range(3, 16)), 16)
    generate(oracle, [[3]], make_manager("spd", extra_plugins=[Zeros()]), CONFIG)
    assert calls == [(1, 0), (2, 0)]  # before each forward: step counts forwards done so far


def test_hook_embed_state_default_is_hard():
    seen = []

    class Spy:
        @hookimpl
        def on_step_end(self, state):
            seen.append(state.ids.clone())

    received = []

    class Inspect(ScriptedDenoiser):
        def denoise(self, inputs_embeds, *, block_ids, valid):
            received.append(inputs_embeds[:, -4:].clone())
            return super().denoise(inputs_embeds, block_ids=block_ids, valid=valid)

    model = Inspect(16, eos_bias=-50.0)
    generate(model, [[5]], make_manager("threshold", params={"tau": 1.0}, extra_plugins=[Spy()]),
             DecodeConfig(block_size=4, max_new_tokens=4))
    # step 2 input: E(ids) where promoted at step 1, e_mask elsewhere
    expected = torch.where(seen[0][..., None] == model.mask_id, model.mask_embedding(), model.table[seen[0]])
    assert torch.equal(received[1], expected)


def test_hook_fill_block():
    """Infilling: a fixed position is never promoted, revoked or re-committed, and reaches the output."""
    seen = []

    class Scaffold:
        @hookimpl
        def fill_block(self, state):
            fixed = torch.full_like(state.ids, FREE)
            fixed[:, 1] = 9  # the second position of every block is given
            return fixed

        @hookimpl
        def on_step_end(self, state):
            seen.append((state.active[:, 1].tolist(), state.promoted[:, 1].tolist()))

    results = generate(quiet_model(), [[5], [6, 7]], make_manager("spd", extra_plugins=[Scaffold()]), CONFIG)
    assert all(r.ids[1] == 9 and r.ids[5] == 9 for r in results)
    assert all(active == [False, False] and promoted == [False, False] for active, promoted in seen)


def test_hook_fill_block_default_fixes_nothing():
    seen = []

    class Spy:
        @hookimpl
        def on_step_end(self, state):
            seen.append(bool(state.active.all()))

    generate(quiet_model(), [[5]], make_manager("threshold", extra_plugins=[Spy()]), CONFIG)
    assert seen and all(seen)


class PromptMasked:
    """LLaDA-style guidance: the unconditional context is the prompt replaced by the mask id."""

    def __init__(self, scale):
        self.scale = scale

    @hookimpl
    def guidance(self, state):
        context = state.context.clone()
        context[:, :state.context.shape[1] - state.start] = MASK_ID
        return Guidance(context=context, scale=self.scale)


class ForwardSpy(ScriptedDenoiser):
    """Records every forward's inputs and logits."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.calls = []

    def denoise(self, inputs_embeds, *, block_ids, valid):
        logits = super().denoise(inputs_embeds, block_ids=block_ids, valid=valid)
        self.calls.append((inputs_embeds.clone(), logits.clone()))
        return logits


def test_hook_guidance():
    """Each guided step runs a second forward of the same block inputs against the plugin's context, the step
    reads u + (w + 1)(c - u), nfe counts the step once and extras count the unconditional forwards."""
    seen = []

    class Spy:
        @hookimpl
        def process_logits(self, state, logits):
            seen.append(logits.clone())

    model = ForwardSpy(16, eos_bias=-50.0, seed=4)
    manager = make_manager("threshold", params={"tau": 1.0}, extra_plugins=[PromptMasked(0.5), Spy()])
    result = generate(model, [[5, 6, 7]], manager, CONFIG)[0]
    assert len(model.calls) == 2 * result.nfe and result.extras["guidance_forwards"] == result.nfe
    table = model.embedding_table()
    for step, logits in enumerate(seen):
        (cond_in, cond), (uncond_in, uncond) = model.calls[2 * step], model.calls[2 * step + 1]
        assert torch.equal(uncond_in[:, :3], table[[MASK_ID] * 3].expand(1, 3, -1))  # the prompt as masks
        assert torch.equal(cond_in[:, 3:], uncond_in[:, 3:])  # same block (and later) inputs
        lo = 3 + 4 * (step >= result.block_steps[0])  # block 2 starts after block 1's steps
        expected = uncond[:, lo:lo + 4] + 1.5 * (cond[:, lo:lo + 4] - uncond[:, lo:lo + 4])
        assert torch.equal(logits, expected)
    assert "guidance" not in decision_providers(make_manager("threshold"))  # listed only when implemented
    assert decision_providers(manager)["guidance"] == "PromptMasked"


def test_hook_guidance_on_a_cached_block_causal_model_matches_uncached():
    """The unconditional forward is always uncached, so guidance composes with the exact prefix cache."""
    model = build_random_model(16, seed=2, hidden_size=16, num_layers=1, num_heads=2, initializer_range=0.5,
                               block_causal=True, mask_token_id=MASK_ID, eos_token_id=EOS_ID, pad_token_id=0)
    runs = [generate(model, [[5, 6, 7], [8]], make_manager("threshold", extra_plugins=[PromptMasked(2.0)]),
                     DecodeConfig(block_size=4, max_new_tokens=8, cache=cache)) for cache in ("none", "prefix")]
    plain = generate(model, [[5, 6, 7], [8]], make_manager("threshold"), CONFIG)
    assert [r.ids for r in runs[0]] == [r.ids for r in runs[1]] != [r.ids for r in plain]


def test_hook_guidance_refused_for_a_model_with_its_own_forward_scheme():
    class OwnScheme(ScriptedDenoiser):
        self_conditioning = True

    with pytest.raises(ModelInputsDenied, match="classifier-free guidance"):
        generate(OwnScheme(16), [[5]], make_manager("threshold", extra_plugins=[PromptMasked(1.0)]), CONFIG)


def test_hook_process_logits():
    """A ban on token 9 in process_logits: 9 is never predicted, so never committed."""

    class BanNine:
        @hookimpl
        def process_logits(self, state, logits):
            logits[..., 9] = float("-inf")
            logits[..., state.mask_id] = float("-inf")
            return logits

    class LovesNine(ScriptedDenoiser):
        def denoise(self, inputs_embeds, *, block_ids, valid):
            logits = super().denoise(inputs_embeds, block_ids=block_ids, valid=valid)
            logits[..., 9] += 100.0
            return logits

    model = LovesNine(16, eos_bias=-50.0)
    plain = generate(model, [[5]], make_manager("threshold"), CONFIG)[0]
    banned = generate(model, [[5]], make_manager("threshold", extra_plugins=[BanNine()]), CONFIG)[0]
    assert set(plain.ids) == {9} and 9 not in banned.ids


def test_hook_process_logits_default_removes_the_mask_logit():
    seen = []

    class Spy:
        needs_logits = True

        @hookimpl
        def on_step_end(self, state):
            seen.append(bool(torch.isneginf(state.logits[..., state.mask_id]).all()))

    generate(quiet_model(), [[5]], make_manager("threshold", extra_plugins=[Spy()]), CONFIG)
    assert seen and all(seen)


def test_hook_revoke():
    """Revoke every token once, at step 2 of each block: the tokens go back to open (the mask id) and are
    promoted again; the trace sees state.revoked."""
    seen = []

    class Once:
        @hookimpl
        def revoke(self, state):
            return state.token_positions if state.step == 2 else None

        @hookimpl
        def on_step_end(self, state):
            seen.append((state.block_index, state.step, int(state.revoked.sum()), int(state.promoted.sum()),
                         int(state.is_mask.sum())))

    config = DecodeConfig(block_size=4, max_new_tokens=8, max_forwards_per_block=8)  # room for re-promotion
    results = generate(quiet_model(), [[5]], make_manager("threshold", params={"tau": 1.0}, extra_plugins=[Once()]),
                       config)
    for block in (1, 2):
        steps = [s for s in seen if s[0] == block]
        assert steps[1][2] == steps[0][3] > 0  # step 2 revoked every token step 1 promoted
        assert sum(s[3] for s in steps) - sum(s[2] for s in steps) == 4  # every position ends a token
        assert steps[-1][4] == 0
    assert MASK_ID not in results[0].ids and len(results[0].ids) == 8


def test_hook_revoke_default_revokes_nothing():
    seen = []

    class Spy:
        @hookimpl
        def on_step_end(self, state):
            seen.append(bool(state.revoked.any()))

    generate(quiet_model(), [[5]], make_manager("hard", extra_plugins=[Spy()]), CONFIG)
    assert seen and not any(seen)


def test_hook_promote():
    class All:
        @hookimpl
        def promote(self, state):
            return state.open_masks

    result = generate(quiet_model(), [[5]], make_manager("hard", extra_plugins=[All()]),
                      DecodeConfig(block_size=4, max_new_tokens=4))[0]
    assert result.block_steps[0] <= 4


def test_hook_promote_default_promotes_one_per_step():
    pm = make_manager("threshold")
    pm.unregister(pm.get_plugin("threshold"))
    steps = []

    class Spy:
        @hookimpl
        def on_step_end(self, state):
            steps.append(int(state.promoted.sum()))

    pm.register(Spy())
    generate(quiet_model(), [[5]], pm, DecodeConfig(block_size=4, max_new_tokens=4))
    assert steps == [1, 1, 1, 1]


def test_hook_converge():
    class AfterTwo:
        @hookimpl
        def converge(self, state):
            return torch.full((state.batch_size,), state.step >= 2)

    result = generate(quiet_model(), [[5]], make_manager("spd", extra_plugins=[AfterTwo()]), CONFIG)[0]
    assert result.block_steps == [2, 2]


def test_hook_commit():
    class Sevens:
        @hookimpl
        def commit(self, state):
            return torch.full_like(state.ids, 7)

    result = generate(quiet_model(), [[5]], make_manager("spd", extra_plugins=[Sevens()]), CONFIG)[0]
    assert result.ids == [7] * 8


def test_hook_on_step_end():
    seen = []

    class Spy:
        @hookimpl
        def on_step_end(self, state):
            seen.append((state.block_index, state.step, state.finishing.tolist()))

    generate(quiet_model(), [[5]], make_manager("threshold", params={"tau": 1.0}, extra_plugins=[Spy()]),
             DecodeConfig(block_size=2, max_new_tokens=4))
    assert seen == [(1, 1, [False]), (1, 2, [True]), (2, 1, [False]), (2, 2, [True])]


def test_hook_on_block_end():
    seen = []

    class Spy:
        @hookimpl
        def on_block_end(self, state, committed):
            seen.append((state.block_index, committed.tolist(), state.steps.tolist()))

    oracle = OracleDenoiser(list(range(3, 16)), 16)
    generate(oracle, [[3]], make_manager("threshold", extra_plugins=[Spy()]), CONFIG)
    assert seen == [(1, [[4, 5, 6, 7]], [1]), (2, [[8, 9, 10, 11]], [1])]


def test_hook_on_generation_end():
    seen = []

    class Spy:
        @hookimpl
        def on_generation_end(self, results):
            seen.append(results)

    oracle = OracleDenoiser([3, 4, 5, EOS_ID, 6, 7, 8, 9, 10, 11, 12], 16)
    results = generate(oracle, [[3], [3, 4]], make_manager("threshold", extra_plugins=[Spy()]), CONFIG)
    assert seen == [results] and all(isinstance(r, RowResult) for r in results)
    assert [r.ids for r in results] == [[4, 5, EOS_ID], [5, EOS_ID]]


class Counter:
    """Counts every hook call; answers no decision hook."""

    def __init__(self):
        self.counts = dict.fromkeys(ALL_HOOKS, 0)

    @hookimpl
    def fill_block(self, state):
        self.counts["fill_block"] += 1

    @hookimpl
    def embed_state(self, state, model):
        self.counts["embed_state"] += 1

    @hookimpl
    def process_logits(self, state, logits):
        self.counts["process_logits"] += 1

    @hookimpl
    def revoke(self, state):
        self.counts["revoke"] += 1

    @hookimpl
    def promote(self, state):
        self.counts["promote"] += 1

    @hookimpl
    def converge(self, state):
        self.counts["converge"] += 1

    @hookimpl
    def commit(self, state):
        self.counts["commit"] += 1

    @hookimpl
    def on_step_end(self, state):
        self.counts["on_step_end"] += 1

    @hookimpl
    def on_block_end(self, state, committed):
        self.counts["on_block_end"] += 1

    @hookimpl
    def on_generation_end(self, results):
        self.counts["on_generation_end"] += 1


def test_hooks_are_called_per_step_for_the_batch_not_per_token_or_row():
    counter = Counter()
    results = generate(quiet_model(), [[5], [6, 7], [8]], make_manager("threshold", extra_plugins=[counter]),
                       DecodeConfig(block_size=8, max_new_tokens=8))
    steps = max(r.block_steps[0] for r in results)
    per_step = ("embed_state", "process_logits", "revoke", "promote", "converge", "on_step_end")
    assert {h: counter.counts[h] for h in per_step} == dict.fromkeys(per_step, steps)
    assert counter.counts["fill_block"] == 1
    assert 1 <= counter.counts["commit"] <= 3
    assert counter.counts["on_block_end"] == 1 and counter.counts["on_generation_end"] == 1
