"""`workbench new-plugin` templates, and the new user's path: scaffold, edit one line, check, run, list."""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
import tomllib

import pytest

from workbench.authoring import checker, scaffold
from workbench.decoding import hookspecs
from workbench.cli import main
from workbench.decoding.registry import ALL_HOOKS, implemented_hooks, load_plugin_file


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A saved tiny random native model with the char tokenizer (what `--model` takes)."""
    from workbench.models.native import build_random_model
    from workbench.models.tokenizer import build_char_tokenizer

    folder = tmp_path_factory.mktemp("tiny-model")
    tokenizer = build_char_tokenizer()
    model = build_random_model(len(tokenizer), seed=0, hidden_size=32, num_layers=2, num_heads=2, block_size=4)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_new_user_path(tmp_path, monkeypatch, capsys, tiny_model_dir):
    monkeypatch.chdir(tmp_path)
    assert main(["new-plugin", "myidea", "--hooks", "promote"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["myidea.py", "test_myidea.py"]
    source = (tmp_path / "myidea.py").read_text()
    assert source.count("default=0.9") == 1
    (tmp_path / "myidea.py").write_text(source.replace("default=0.9", "default=0.6"))  # the one-line edit

    assert main(["check-plugin", "myidea.py", "--examples", "5"]) == 0
    capsys.readouterr()
    assert main(["run", "--strategy", "spd", "--plugin", "myidea.py", "--model", str(tiny_model_dir), "--limit", "4",
                 "--json", "--store", str(tmp_path / "results.db")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["decisions"] == {"fill_block": "core-defaults", "embed_state": "spd", "process_logits": "spd",
                                   "revoke": "core-defaults", "promote": "myidea.Myidea", "converge": "spd",
                                   "commit": "spd"}
    assert result["n"] == 4 and result["plugins"] == ["myidea.py"]
    assert load_plugin_file(tmp_path / "myidea.py")[0][1].tau == 0.6

    # A second edit that breaks the contract: check-plugin exits 1 and names the invariant.
    edited = (tmp_path / "myidea.py").read_text()
    rule = "return open_ & (state.conf >= self.tau)"
    (tmp_path / "myidea.py").write_text(edited.replace(rule, "return ~open_ & state.active"))
    assert main(["check-plugin", "myidea.py", "--examples", "5", "--strategies", "spd"]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "FAIL contract x spd" in out and "myidea.Myidea" in out


def test_generated_tests_pass(tmp_path):
    scaffold.write("gen", "promote", directory=tmp_path)
    spec = importlib.util.spec_from_file_location("test_gen_generated", tmp_path / "test_gen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.test_invariants_with_each_builtin_strategy("threshold")
    module.test_strategy_agnostic_properties_with_spd()
    module.test_promote_on_hand_made_confidences()


def test_every_hook_template_runs_and_keeps_the_invariants(tmp_path):
    (path, _) = scaffold.write("everything", ",".join(reversed(ALL_HOOKS)), directory=tmp_path)
    ((name, plugin),) = load_plugin_file(path)
    assert implemented_hooks(plugin) == ALL_HOOKS  # in spec order whatever order they were asked in
    report = checker.check([(name, plugin)], strategies=["threshold", "spd"], examples=4)
    assert report.ok, report.text()


def test_hook_signatures_and_docstrings_come_from_the_specs(tmp_path):
    (path, _) = scaffold.write("docs", ",".join(ALL_HOOKS), directory=tmp_path)
    ((_, plugin),) = load_plugin_file(path)
    for hook in ALL_HOOKS:
        spec, impl = getattr(hookspecs, hook), getattr(type(plugin), hook)
        assert inspect.getdoc(impl) == inspect.getdoc(spec)
        assert list(inspect.signature(impl).parameters)[1:] == list(inspect.signature(spec).parameters)


def test_refuses_to_overwrite_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "test_mine.py").write_text("# mine\n")
    assert main(["new-plugin", "mine", "--dir", str(tmp_path)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert not (tmp_path / "mine.py").exists() and (tmp_path / "test_mine.py").read_text() == "# mine\n"


@pytest.mark.parametrize("args,message", [
    (["my-idea"], "try 'my_idea'"),
    (["class"], "must be a Python identifier"),
    (["torch"], "would shadow"),
    (["ok", "--hooks", "promte"], "unknown hook(s) 'promte'; valid hooks: fill_block, guidance, embed_state, process_logits, revoke, promote"),
])
def test_bad_names_and_hooks(tmp_path, capsys, args, message):
    assert main(["new-plugin", *args, "--dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_package_declares_a_module_entry_point_and_installs_as_one(tmp_path, monkeypatch, capsys):
    assert main(["new-plugin", "pkgidea", "--package", "--dir", str(tmp_path)]) == 0
    assert "pip install -e" in capsys.readouterr().out
    root = tmp_path / "pkgidea"
    assert sorted(p.name for p in root.iterdir()) == ["README.md", "pkgidea.py", "pyproject.toml", "test_pkgidea.py"]
    meta = tomllib.loads((root / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["workbench"] == {"pkgidea": "pkgidea"}  # a module, not a class
    assert meta["tool"]["setuptools"]["py-modules"] == ["pkgidea"]

    monkeypatch.chdir(tmp_path)
    assert main(["check-plugin", "pkgidea"]) == 2  # not installed yet: says how to check the file instead
    assert "workbench check-plugin pkgidea/pkgidea.py" in capsys.readouterr().err

    # What `pip install -e` would leave behind: the module on sys.path and the entry point's metadata.
    site = tmp_path / "site" / "workbench_pkgidea-0.1.0.dist-info"
    site.mkdir(parents=True)
    (site / "METADATA").write_text("Metadata-Version: 2.1\nName: workbench-pkgidea\nVersion: 0.1.0\n")
    (site / "entry_points.txt").write_text("[workbench]\npkgidea = pkgidea\n")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "pkgidea", raising=False)
    try:
        assert main(["plugins", "--json"]) == 0
        rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
        assert rows["pkgidea"]["version"] == "0.1.0" and rows["pkgidea"]["hooks"] == ["promote"]
        assert rows["pkgidea"]["source"] == "entry point (workbench-pkgidea: pkgidea)"
        assert main(["check-plugin", "pkgidea", "--examples", "3", "--strategies", "threshold", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["providers"]["threshold"]["promote"] == "pkgidea"
    finally:
        sys.modules.pop("pkgidea", None)


def test_plugins_lists_builtins_building_blocks_and_files(tmp_path, capsys):
    scaffold.write("listed", "promote,on_step_end", directory=tmp_path)
    assert main(["plugins", "--json", "--plugin", str(tmp_path / "listed.py")]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["spd"]["source"] == "builtin strategy"
    assert rows["spd"]["hooks"] == ["embed_state", "process_logits", "promote", "converge", "commit"]
    assert rows["core-defaults"]["hooks"] == ["fill_block", "embed_state", "process_logits", "revoke", "promote",
                                              "converge", "commit"]
    assert rows["promotion.ContiguousPromotion"]["hooks"] == ["promote"]
    assert rows["listed.Listed"]["hooks"] == ["promote", "on_step_end"]
    assert rows["listed.Listed"]["source"].startswith("file (")
    assert main(["plugins"]) == 0
    assert "listed" not in capsys.readouterr().out  # files only when asked for
