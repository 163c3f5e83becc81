"""The core enforces the decision-hook contract and names the plugin, hook and rule that broke."""

from __future__ import annotations

import pytest
import torch

from workbench.contract import PluginContractError
from workbench.loop import generate
from workbench.properties import MASK_ID, ScriptedDenoiser
from workbench.registry import hookimpl, make_manager
from workbench.state import DecodeConfig

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


def test_commit_that_puts_mask_ids_on_token_positions():
    expect(CommitsMask(), "commit", "mask id only at open positions")


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
