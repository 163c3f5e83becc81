"""The core enforces the decision-hook contract and names the plugin, hook and rule that broke."""

from __future__ import annotations

import pytest
import torch

from workbench.decoding.contract import PluginContractError, PluginRuntimeError
from workbench.decoding.loop import generate
from workbench.authoring.properties import MASK_ID, ScriptedDenoiser
from workbench.decoding.registry import decision_providers, format_providers, hookimpl, make_manager
from workbench.decoding.state import DecodeConfig, Guidance, Promotion, StashKey

CONFIG = DecodeConfig(block_size=4, max_new_tokens=8)


def run_with(plugin, strategy="spd"):
    model = ScriptedDenoiser(16, eos_bias=-50.0)
    return generate(model, [[5, 6], [7]], make_manager(strategy, extra_plugins=[plugin]), CONFIG)


def expect(plugin, hook, rule, strategy="spd"):
    with pytest.raises(PluginContractError) as info:
        run_with(plugin, strategy)
    err = info.value
    assert (err.plugin, err.hook, err.rule) == (type(plugin).__name__, hook, rule)
    assert type(plugin).__name__ in str(err) and hook in str(err) and "Hint:" in str(err)
    return err


class PromotesTokens:
    """Promotes every position, including ones already promoted."""

    @hookimpl
    def promote(self, state):
        return torch.ones_like(state.is_mask)


class PromotesWrongShape:
    @hookimpl
    def promote(self, state):
        return torch.ones(state.batch_size, state.length + 1, dtype=torch.bool)


class PromotesIndices:
    @hookimpl
    def promote(self, state):
        return torch.zeros(state.batch_size, state.length, dtype=torch.long)


class CommitsOutOfVocab:
    @hookimpl
    def commit(self, state):
        return torch.full_like(state.ids, 10_000)


class CommitsMask:
    @hookimpl
    def commit(self, state):
        return state.ids.masked_fill(torch.ones_like(state.is_mask), MASK_ID)


class CommitsFloats:
    @hookimpl
    def commit(self, state):
        return state.top.float()


class EmbedsWrongShape:
    @hookimpl
    def embed_state(self, state, model):
        return torch.zeros(state.batch_size, state.length, 3, dtype=torch.float64)


class EmbedsWrongDtype:
    @hookimpl
    def embed_state(self, state, model):
        return torch.zeros(state.batch_size, state.length, model.embedding_table().shape[1], dtype=torch.float16)


class EmbedsNaN:
    @hookimpl
    def embed_state(self, state, model):
        table = model.embedding_table()
        return torch.full((state.batch_size, state.length, table.shape[1]), float("nan"), dtype=table.dtype)


class ConvergesPerPosition:
    @hookimpl
    def converge(self, state):
        return state.is_mask


class ReturnsList:
    @hookimpl
    def converge(self, state):
        return [True] * state.batch_size


def test_promote_of_a_non_mask_position():
    err = expect(PromotesTokens(), "promote", "promote only active open positions")
    assert "open_masks" in str(err)


def test_promote_wrong_shape():
    expect(PromotesWrongShape(), "promote", "shape")


def test_promote_wrong_dtype():
    expect(PromotesIndices(), "promote", "dtype")


def test_commit_out_of_vocab():
    expect(CommitsOutOfVocab(), "commit", "ids in [0, vocab)")


def test_committed_mask_ids_are_counted_not_hidden():
    """DMax leaves positions masked at the cap: allowed, and every mask id in an output is reported."""
    results = run_with(CommitsMask())
    assert all(r.ids.count(MASK_ID) == r.extras["unfilled"] > 0 for r in results)


def test_commit_dtype():
    expect(CommitsFloats(), "commit", "dtype")


def test_embed_state_wrong_shape_and_dtype():
    expect(EmbedsWrongShape(), "embed_state", "shape")
    expect(EmbedsWrongDtype(), "embed_state", "dtype")
    expect(EmbedsNaN(), "embed_state", "finite")


def test_converge_shape_and_type():
    expect(ConvergesPerPosition(), "converge", "shape")
    expect(ReturnsList(), "converge", "type")


def test_error_names_the_plugin_that_answered_not_the_first_asked():
    class Silent:
        """Asked first, always defers."""

        @hookimpl
        def promote(self, state):
            return None

    class Broken(PromotesTokens):
        pass

    model = ScriptedDenoiser(16, eos_bias=-50.0)
    pm = make_manager("spd", extra_plugins=[Broken(), Silent()])
    with pytest.raises(PluginContractError) as info:
        generate(model, [[5]], pm, CONFIG)
    assert info.value.plugin == "Broken"


def test_builtin_strategies_keep_the_contract():
    model = ScriptedDenoiser(16, seed=4)
    for name in ("threshold", "hierarchical", "hard", "spd"):
        generate(model, [[5, 6], [7], [8, 9, 10]], make_manager(name), CONFIG)


# -- the hooks added with revocation and token choice ------------------------------------------------------


class RevokesOpen:
    """Revokes open positions too (they are not tokens)."""

    @hookimpl
    def revoke(self, state):
        return torch.ones_like(state.is_mask)


class PromotesTheMaskToken:
    @hookimpl
    def promote(self, state):
        return Promotion(positions=state.open_masks, tokens=torch.full_like(state.ids, MASK_ID))


class FillsWithFloats:
    @hookimpl
    def fill_block(self, state):
        return torch.zeros(state.batch_size, state.length)


class LogitsOfAnotherShape:
    @hookimpl
    def process_logits(self, state, logits):
        return logits[:, :1]


def test_revoke_of_an_open_position():
    err = expect(RevokesOpen(), "revoke", "revoke only active token positions")
    assert "token_positions" in str(err)


def test_promote_tokens_are_checked():
    expect(PromotesTheMaskToken(), "promote", "no mask id promoted")


def test_fill_block_and_process_logits_are_checked():
    expect(FillsWithFloats(), "fill_block", "dtype")
    expect(LogitsOfAnotherShape(), "process_logits", "shape")


class GuidesWith:
    def __init__(self, make):
        self.make = make

    @hookimpl
    def guidance(self, state):
        return self.make(state)


@pytest.mark.parametrize("make, rule", [
    (lambda state: state.context, "type"),
    (lambda state: Guidance(context=state.context[:, 1:], scale=1.0), "shape"),
    (lambda state: Guidance(context=state.context.float(), scale=1.0), "dtype"),
    (lambda state: Guidance(context=state.context + 100, scale=1.0), "ids in [0, vocab)"),
    (lambda state: Guidance(context=state.context, scale=-1.0), "scale a finite number >= 0"),
    (lambda state: Guidance(context=state.context, scale=float("nan")), "scale a finite number >= 0"),
])
def test_guidance_is_checked(make, rule):
    with pytest.raises(PluginContractError) as info:
        run_with(GuidesWith(make))
    assert (info.value.hook, info.value.rule) == ("guidance", rule)


# -- errors that name the plugin (issue 15, items 13-16) ---------------------------------------------------


def test_an_exception_inside_a_plugin_names_plugin_hook_and_line():
    class Raises:
        @hookimpl
        def converge(self, state):
            raise ValueError("my rule has a bug")

    with pytest.raises(PluginRuntimeError) as info:
        run_with(Raises())
    err = info.value
    assert (err.plugin, err.hook) == ("Raises", "converge")
    assert "test_contract.py:" in err.where and "my rule has a bug" in str(err)
    assert isinstance(err.__cause__, ValueError) and "raise ValueError" in err.traceback_text()


def test_an_observer_exception_names_the_observer():
    class Watches:
        @hookimpl
        def on_block_end(self, state, committed):
            {}["missing"]

    with pytest.raises(PluginRuntimeError, match=r"plugin 'Watches' raised KeyError in hook 'on_block_end'"):
        run_with(Watches())


def test_a_wrapper_that_changes_a_decision_is_named():
    class Nan:
        """Replaces SPD's embeddings with NaN on the way out."""

        @hookimpl(wrapper=True)
        def embed_state(self, state, model):
            result = yield
            return result * float("nan")

    pm = make_manager("spd", extra_plugins=[Nan()])
    assert decision_providers(pm)["embed_state"] == "spd [wrapped by Nan]"
    assert "embed_state=spd [wrapped by Nan]" in format_providers(pm)
    with pytest.raises(PluginContractError) as info:
        generate(ScriptedDenoiser(16, eos_bias=-50.0), [[5]], pm, CONFIG)
    assert info.value.plugin == "spd [result changed by wrapper Nan]" and info.value.rule == "finite"


def test_an_old_style_hookwrapper_that_forces_a_result_is_named():
    class Force:
        @hookimpl(hookwrapper=True)
        def promote(self, state):
            outcome = yield
            outcome.force_result(torch.ones_like(state.is_mask))  # promotes token positions too

    with pytest.raises(PluginContractError) as info:
        run_with(Force())
    assert info.value.plugin == "spd [result changed by wrapper Force]"


def test_a_wrapper_that_only_observes_keeps_the_answer_and_the_tokens():
    class Timing:
        @hookimpl(wrapper=True)
        def promote(self, state):
            return (yield)

    model = ScriptedDenoiser(16, eos_bias=-50.0)
    plain = generate(model, [[5, 6], [7]], make_manager("spd"), CONFIG)
    timed = generate(model, [[5, 6], [7]], make_manager("spd", extra_plugins=[Timing()]), CONFIG)
    assert [r.ids for r in plain] == [r.ids for r in timed]


@pytest.mark.parametrize("field,how", [("conf", "write"), ("is_mask", "replace"), ("ids", "write")])
def test_a_plugin_that_writes_core_state_is_named(field, how):
    class Meddles:
        @hookimpl
        def on_step_end(self, state):
            if how == "write":
                getattr(state, field).zero_()
            else:
                setattr(state, field, getattr(state, field).clone())

    with pytest.raises(PluginContractError) as info:
        run_with(Meddles())
    err = info.value
    assert (err.plugin, err.hook, err.rule) == ("Meddles", "on_step_end", "plugins write only their stash")
    assert f"state.{field}" in str(err) and "stash" in str(err)


def test_writing_the_stash_is_allowed():
    key = StashKey[int]()

    class Counts:
        @hookimpl
        def on_step_end(self, state):
            state.stash[key] = state.stash.get(key, 0) + 1

    run_with(Counts())


def test_huge_but_finite_embeddings_are_not_called_nan():
    class Huge:
        @hookimpl
        def embed_state(self, state, model):
            return torch.full((state.batch_size, state.length, model.embedding_table().shape[1]), 1e300,
                              dtype=model.embedding_table().dtype)

    err = expect(Huge(), "embed_state", "sane size")
    assert "NaN" not in str(err)


def test_the_cli_prints_a_plugin_bug_with_its_traceback_and_a_builtin_refusal_as_one_line(tmp_path, capsys):
    from workbench.cli import main

    plugin = tmp_path / "buggy.py"
    plugin.write_text("from workbench.decoding.registry import hookimpl\n\n"
                      "class Buggy:\n"
                      "    @hookimpl\n"
                      "    def converge(self, state):\n"
                      "        return state.conf.topk(99)\n")
    store = str(tmp_path / "r.db")
    assert main(["run", "--trainer", "base", "--plugin", str(plugin), "--limit", "2", "--store", store]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "buggy.py" in err and "return state.conf.topk(99)" in err
    assert err.strip().splitlines()[-1].startswith(
        "workbench run: error: plugin 'buggy.Buggy' raised RuntimeError in hook 'converge' at buggy.py:6")
    assert main(["run", "--trainer", "uniform", "--strategy", "spd", "--noise", "uniform", "--limit", "2",
                 "--store", store]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and "open_input=mean" in err
