"""Plugin manager factory: registration order, provenance, strategy lookup, params, plugin files."""

from __future__ import annotations

import importlib.metadata
import textwrap

import pytest
import torch

from workbench.decoding.loop import generate
from workbench.authoring.properties import ScriptedDenoiser
from workbench.decoding.registry import (
    PluginLoadError, StrategyParamError, UnknownStrategyError, available_strategies, decision_providers,
    format_providers, hookimpl, make_manager, strategy_threshold_param,
)
from workbench.decoding.state import DecodeConfig

CONFIG = DecodeConfig(block_size=4, max_new_tokens=8)


class LeftmostOnly:
    """The 20-line plugin of the design: promote only the leftmost mask position."""

    @hookimpl
    def promote(self, state):
        open_ = state.open_masks
        out = torch.zeros_like(open_)
        return out.scatter_(1, open_.to(torch.uint8).argmax(-1, keepdim=True), open_.any(-1, keepdim=True))


def test_fresh_manager_per_call():
    assert make_manager("spd") is not make_manager("spd")
    assert make_manager("spd").get_plugin("spd") is not make_manager("spd").get_plugin("spd")


def test_providers_of_builtins():
    assert decision_providers(make_manager("threshold")) == {
        "fill_block": "core-defaults", "embed_state": "core-defaults", "process_logits": "threshold",
        "revoke": "core-defaults", "promote": "threshold", "converge": "core-defaults", "commit": "core-defaults"}
    assert set(decision_providers(make_manager("spd")).values()) == {"spd", "core-defaults"}


def test_promote_only_plugin_combined_with_spd():
    pm = make_manager("spd", extra_plugins=[LeftmostOnly()])
    assert decision_providers(pm) == {"fill_block": "core-defaults", "embed_state": "spd",
                                      "process_logits": "spd", "revoke": "core-defaults",
                                      "promote": "LeftmostOnly", "converge": "spd", "commit": "spd"}
    assert format_providers(pm) == ("embed_state=spd process_logits=spd promote=LeftmostOnly converge=spd "
                                     "commit=spd; "
                                     "core defaults: fill_block revoke")
    steps = []

    class Spy:
        @hookimpl
        def on_step_end(self, state):
            steps.append(int(state.promoted.sum()))

    pm.register(Spy())
    generate(ScriptedDenoiser(16, eos_bias=-50.0), [[5]], pm, DecodeConfig(block_size=4, max_new_tokens=4))
    assert steps[:4] == [1, 1, 1, 1]  # the plugin's rule, not SPD's contiguous run


def test_unknown_strategy_lists_valid_names():
    with pytest.raises(UnknownStrategyError, match="threshold, hierarchical, hard, spd"):
        make_manager("spdd")


def test_bad_param_names_the_parameter():
    with pytest.raises(StrategyParamError, match="'tau_dec' must be a number in \\[0, 1\\]"):
        make_manager("spd", params={"tau_dec": 1.5})
    with pytest.raises(StrategyParamError, match="no parameter 'tua'.*tau"):
        make_manager("threshold", params={"tua": 0.5})
    with pytest.raises(StrategyParamError, match="rule"):
        make_manager("threshold", params={"rule": "median"})


def test_tau_alias_sets_the_main_threshold():
    expected = {"threshold": "tau", "hierarchical": "threshold", "hard": "tau_dec", "spd": "tau_dec"}
    for name, param in expected.items():
        assert strategy_threshold_param(name) == param
        plugin = make_manager(name, params={"tau": 0.25}).get_plugin(name)
        assert getattr(plugin, param) == 0.25


def test_available_strategies():
    infos = {i.name: i for i in available_strategies()}
    assert list(infos)[:5] == ["threshold", "hierarchical", "hard", "spd", "uniform-eb"]
    assert infos["spd"].hooks == ("embed_state", "process_logits", "promote", "converge", "commit")
    assert infos["threshold"].hooks == ("process_logits", "promote")
    assert infos["uniform-eb"].hooks == ("process_logits", "revoke", "promote", "converge", "commit")
    assert infos["spd"].params["tau_dec"] == 0.5 and infos["spd"].source == "builtin"
    assert infos["hard"].version


def test_plugin_file_overrides_only_what_it_implements(tmp_path):
    path = tmp_path / "my_idea.py"
    path.write_text(textwrap.dedent("""
        import torch
        from workbench.decoding.registry import hookimpl

        class Leftmost:
            @hookimpl
            def promote(self, state):
                open_ = state.open_masks
                out = torch.zeros_like(open_)
                return out.scatter_(1, open_.to(torch.uint8).argmax(-1, keepdim=True), open_.any(-1, keepdim=True))
    """))
    pm = make_manager("spd", plugin_files=[path])
    assert decision_providers(pm)["promote"] == "my_idea.Leftmost"
    assert decision_providers(pm)["commit"] == "spd"
    generate(ScriptedDenoiser(16), [[5]], pm, CONFIG)


def test_plugin_file_errors_name_the_file(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("import does_not_exist_anywhere\n")
    with pytest.raises(PluginLoadError, match="broken.py.*failed to import.*ModuleNotFoundError"):
        make_manager("spd", plugin_files=[broken])
    empty = tmp_path / "empty.py"
    empty.write_text("X = 1\n")
    with pytest.raises(PluginLoadError, match="empty.py.*defines no plugin"):
        make_manager("spd", plugin_files=[empty])
    with pytest.raises(PluginLoadError, match="does not exist"):
        make_manager("spd", plugin_files=[tmp_path / "missing.py"])


def test_misspelt_hook_fails_loudly():
    class Typo:
        @hookimpl
        def promte(self, state):
            return None

    with pytest.raises(PluginLoadError, match="promte"):
        make_manager("spd", extra_plugins=[Typo()])


def test_module_level_plugin_file(tmp_path):
    path = tmp_path / "observer.py"
    path.write_text(textwrap.dedent("""
        from workbench.decoding.registry import hookimpl
        SEEN = []

        @hookimpl
        def on_block_end(state, committed):
            SEEN.append(committed.shape)
    """))
    pm = make_manager("threshold", plugin_files=[path])
    generate(ScriptedDenoiser(16, eos_bias=-50.0), [[5]], pm, CONFIG)
    assert len(pm.get_plugin("observer").SEEN) == 2


def test_entry_point_strategy(tmp_path, monkeypatch):
    (tmp_path / "third_party_strategy.py").write_text(textwrap.dedent("""
        import attrs, torch
        from workbench.decoding.registry import hookimpl, unit_interval

        @attrs.frozen(eq=False, kw_only=True)
        class Greedy:
            main_threshold = "tau"
            tau: float = attrs.field(default=0.0, validator=unit_interval)

            @hookimpl
            def promote(self, state):
                return state.open_masks & (state.conf >= self.tau)

        STRATEGY = Greedy
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = importlib.metadata.EntryPoint(name="greedy", value="third_party_strategy", group="workbench")
    real = importlib.metadata.entry_points

    def fake_entry_points(**kw):
        return importlib.metadata.EntryPoints([ep]) if kw.get("group") == "workbench" else real(**kw)

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    pm = make_manager("greedy", params={"tau": 0.5})
    assert decision_providers(pm)["promote"] == "greedy" and pm.get_plugin("greedy").tau == 0.5
    assert "greedy" in {i.name for i in available_strategies()}
    with pytest.raises(UnknownStrategyError, match="greedy"):
        make_manager("nope")
    generate(ScriptedDenoiser(16), [[5]], pm, CONFIG)
