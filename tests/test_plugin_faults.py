"""Contract-breaking plugins that used to store a wrong number with exit 0, each now stopped with one line that
names the plugin (or said in the output and the store): non-finite logits, observers that edit results, huge
embeddings, misnamed hook arguments, shadowed hooks, same-named plugin files, an entry-point package's other
modules, observer extras read back, and draws from torch's global generator.

Models are the scripted fakes of `workbench.authoring.properties` (consistency with the contract)."""

from __future__ import annotations

import json
import math
import warnings
from types import SimpleNamespace

import pytest
import torch

from workbench import PluginContractError, PluginError, generate, hookimpl, make_manager
from workbench.authoring.properties import ScriptedDenoiser
from workbench.cli import main as cli
from workbench.decoding.catalog import ShadowedHookWarning
from workbench.decoding.loop import GlobalRandomWarning
from workbench.decoding.state import DecodeConfig
from workbench.results.provenance import distribution_hash

CONFIG = DecodeConfig(block_size=4, max_new_tokens=8)
PROMPTS = [[5, 6, 7], [8], [9, 10]]


def model():
    return ScriptedDenoiser(16, eos_bias=-50.0, scale=0.7)


def decode(strategy="threshold", *plugins, config=CONFIG, params=None, m=None):
    return generate(m or model(), PROMPTS, make_manager(strategy, params=params, extra_plugins=plugins), config)


class NaNLogits:
    def __init__(self, where="all"):
        self.where = where

    @hookimpl
    def process_logits(self, state, logits):
        if self.where == "all":
            return torch.full_like(logits, math.nan)
        out = logits.clone()
        out[0, -1, 3] = math.nan  # one entry of one position
        return out


class BannedEverything:
    @hookimpl
    def process_logits(self, state, logits):
        out = logits.clone()
        out[:, 1] = -math.inf  # position 1 has no token left
        return out


class ForcedWithInfinity:
    @hookimpl
    def process_logits(self, state, logits):
        out = logits.clone()
        out[..., 5] = math.inf
        return out


@pytest.mark.parametrize("plugin, what", [(NaNLogits("all"), "NaN logits"), (NaNLogits("some"), "NaN logits"),
                                          (BannedEverything(), "every logit is -inf"),
                                          (ForcedWithInfinity(), r"\+inf logit")])
def test_non_finite_logits_are_refused_naming_the_plugin(plugin, what):
    with pytest.raises(PluginContractError, match=rf"plugin '.*{type(plugin).__name__}'.*finite logits.*{what}"):
        decode("threshold", plugin)


@pytest.mark.parametrize("strategy, params, config", [
    ("spd", None, CONFIG),  # NaN would reach SPD's hybrid embedding: the error must not blame spd
    ("threshold", None, DecodeConfig(block_size=4, max_new_tokens=8, temperature=0.7)),  # nor torch.multinomial
])
def test_nan_logits_are_blamed_on_the_plugin_that_made_them(strategy, params, config):
    with pytest.raises(PluginContractError) as err:
        decode(strategy, NaNLogits("all"), config=config, params=params)
    assert err.value.plugin.endswith("NaNLogits") and err.value.hook == "process_logits"


def test_a_model_that_returns_nan_is_named_as_the_model():
    class Broken(ScriptedDenoiser):
        def denoise(self, inputs_embeds, *, block_ids, valid):
            return torch.full((*inputs_embeds.shape[:2], self.vocab_size), math.nan, dtype=inputs_embeds.dtype)

    with pytest.raises(ValueError, match="the model's forward returned non-finite logits"):
        decode("threshold", m=Broken(16))


class HugeEmbeddings:
    @hookimpl
    def embed_state(self, state, model):
        e = model.embedding_table()[state.ids]
        return e.sign() * 1e30  # finite, and far too large: the old check fired only when a sum overflowed


def test_huge_but_finite_embeddings_are_refused():
    with pytest.raises(PluginContractError, match=r"HugeEmbeddings.*sane size"):
        decode("threshold", HugeEmbeddings())


def test_check_plugin_fails_huge_embeddings(tmp_path, capsys):
    path = tmp_path / "huge.py"
    path.write_text("from workbench import hookimpl\n\nclass Huge:\n    @hookimpl\n    def embed_state(self, state, "
                    "model):\n        return model.embedding_table()[state.ids].sign() * 1e30\n")
    assert cli(["check-plugin", str(path), "--strategies", "threshold", "--examples", "2", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["ok"]


class EditsResults:
    @hookimpl
    def on_generation_end(self, results):
        for r in results:
            r.ids[:] = [5] * len(r.ids)


def test_an_observer_that_edits_the_results_is_refused():
    with pytest.raises(PluginContractError, match=r"EditsResults.*observers change only extras.*results\[0\]\.ids"):
        decode("threshold", EditsResults())


def test_an_observer_may_add_extras():
    class Counts:
        @hookimpl
        def on_generation_end(self, results):
            for r in results:
                r.extras["my_length"] = len(r.ids)

    assert all("my_length" in r.extras for r in decode("threshold", Counts()))


def test_an_editing_observer_stores_nothing_and_a_plain_run_is_not_served_its_samples(tmp_path, capsys):
    path, store = tmp_path / "edit.py", str(tmp_path / "r.db")
    path.write_text("from workbench import hookimpl\n\nclass Edit:\n    @hookimpl\n    def on_generation_end(self, "
                    "results):\n        for r in results:\n            r.ids[:] = [5] * len(r.ids)\n")
    common = ["run", "--strategy", "threshold", "--limit", "4", "--store", store, "--json", "--quiet"]
    assert cli([*common, "--plugin", str(path)]) == 2
    assert "observers change only extras" in capsys.readouterr().err
    assert cli(common) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["from_store"] == 0


def test_a_misnamed_hook_argument_is_one_line_naming_file_and_hook(tmp_path, capsys):
    path = tmp_path / "typo.py"
    path.write_text("from workbench import hookimpl\n\nclass Typo:\n    @hookimpl\n    def promote(self, st):\n"
                    "        return None\n")
    assert cli(["run", "--strategy", "threshold", "--plugin", str(path), "--limit", "2",
                "--store", str(tmp_path / "r.db")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "typo.py" in err and "promote() takes (st)" in err and "(state)" in err
    with pytest.raises(PluginError, match="promote"):
        make_manager("threshold", plugin_files=[path])


def _promote_file(folder, cls):
    folder.mkdir(exist_ok=True)
    path = folder / "idea.py"
    path.write_text(f"from workbench import hookimpl\n\nclass {cls}:\n    @hookimpl\n    def promote(self, state):\n"
                    f"        return None  # {cls}\n")
    return path


def test_two_plugin_files_answering_one_hook_are_warned_about(tmp_path):
    a, b = _promote_file(tmp_path / "a", "One"), _promote_file(tmp_path / "b", "Two")
    with pytest.warns(ShadowedHookWarning, match=r"promote is answered by 'b/idea.Two'.*'a/idea.One'"):
        pm = make_manager("threshold", plugin_files=[a, b])
    # Same file name, other folders: their names carry the folder, so summaries and stores tell them apart.
    assert {"a/idea.One", "b/idea.Two"} <= {name for name, _ in pm.list_name_plugin()}


def test_same_named_plugin_files_get_distinct_report_labels(tmp_path, capsys):
    store = str(tmp_path / "r.db")
    for folder, cls in (("a", "One"), ("b", "Two")):
        path = _promote_file(tmp_path / folder, cls)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert cli(["run", "--strategy", "threshold", "--plugin", str(path), "--limit", "2", "--store", store,
                        "--quiet", "--json"]) == 0
    capsys.readouterr()
    assert cli(["report", "--store", store, "--format", "json"]) == 0
    methods = [e["method"] for e in json.loads(capsys.readouterr().out)["aup"]]
    assert len(methods) == 2 and len(set(methods)) == 2
    assert cli(["report", "--store", store]) == 0  # the table keeps the `[...]` that tells them apart
    table = capsys.readouterr().out
    assert "plugins.0.sha256" in table


def test_an_entry_point_package_is_keyed_on_all_its_modules(tmp_path):
    package = tmp_path / "mystrategy"
    package.mkdir()
    (package / "__init__.py").write_text("STRATEGY = None\n")
    (package / "helpers.py").write_text("RULE = 1\n")
    top = SimpleNamespace(__path__=[str(package)])
    ep = SimpleNamespace(dist=None)
    before = distribution_hash(ep, top)
    (package / "helpers.py").write_text("RULE = 2\n")  # a module imported only inside a function, say
    assert distribution_hash(ep, top) != before


def test_observer_extras_are_read_back_by_run_json_and_report(tmp_path, capsys):
    path, store = tmp_path / "length.py", str(tmp_path / "r.db")
    path.write_text("from workbench import hookimpl\n\nclass Length:\n    @hookimpl\n    def on_generation_end(self, "
                    "results):\n        for r in results:\n            r.extras['my_length'] = len(r.ids)\n")
    assert cli(["run", "--strategy", "threshold", "--plugin", str(path), "--limit", "3", "--store", store,
                "--json", "--quiet"]) == 0
    extras = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["extras"]
    assert extras["my_length"]["samples"] == 3 and extras["my_length"]["mean"] > 0
    assert cli(["report", "--store", store, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["cells"][0]["extras"]["my_length"]["samples"] == 3


class GlobalDraw:
    @hookimpl
    def promote(self, state):
        pick = torch.rand(state.conf.shape) < 0.5  # torch's global generator: not reproducible
        return pick & state.open_masks


def test_a_plugin_drawing_from_the_global_generator_is_said_in_the_output_and_the_samples():
    with pytest.warns(GlobalRandomWarning, match=r"GlobalDraw.*in promote.*state.rng"):
        results = decode("threshold", GlobalDraw())
    assert all(any("GlobalDraw.promote" in name for name in r.extras["global_rng"]) for r in results)


def test_a_plugin_drawing_from_state_rng_is_not_flagged():
    class OwnDraw:
        @hookimpl
        def promote(self, state):
            return (state.rng.rand(state.length) < 0.5) & state.open_masks

    with warnings.catch_warnings():
        warnings.simplefilter("error", GlobalRandomWarning)
        results = decode("threshold", OwnDraw())
    assert all("global_rng" not in r.extras for r in results)
