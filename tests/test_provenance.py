"""The results store never hands one configuration's samples to another (issue 14, items 6-9, 12, 13).

Runs go through the real CLI (`workbench run`, `report`) on the shipped models with a few samples, or through
`RunSpec.config` (the run key itself). The plugin files, the entry-point distribution and the task files are
written here.
"""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from workbench.cli import main as cli
from workbench.results.evaluate import RunSpec
from workbench.results.provenance import strategy_identity
from workbench.decoding.state import DecodeConfig
from workbench.results.store import ResultsStore, SampleRecord, config_key
from workbench.tasks import load_task

LIMIT = "6"


def run_json(capsys, *args) -> dict:
    assert cli(["run", "--limit", LIMIT, "--json", "--quiet", "--device", "cpu", *args]) == 0
    return json.loads(capsys.readouterr().out)


def spec(**changes) -> RunSpec:
    fields = dict(strategy="threshold", params={}, plugins=(), trainer="oput", model="m", model_hash="h",
                  task="choice", decode=DecodeConfig(block_size=8, max_new_tokens=16), batch_size=64)
    return RunSpec(**{**fields, **changes})


def key(s: RunSpec) -> str:
    return config_key(s.config({}))


# -- 6: plugins are identified by their code ----------------------------------------------------------------
# A promotion rule whose behaviour is a constant in the file: editing the constant is editing the plugin.
PLUGIN = '''
from workbench.decoding.registry import hookimpl

class Leftmost:
    @hookimpl
    def promote(self, state):
        open_ = state.is_mask & state.active
        return open_ & (open_.long().cumsum(-1) <= {k})
'''


def test_an_edited_plugin_file_is_decoded_again_not_served_the_old_samples(tmp_path, capsys):
    plugin, store = tmp_path / "rule.py", str(tmp_path / "r.db")
    plugin.write_text(PLUGIN.format(k=8))  # promote the whole block at once: the choice task's pairs break
    first = run_json(capsys, "--strategy", "threshold", "--plugin", str(plugin), "--store", store)
    plugin.write_text(PLUGIN.format(k=1))  # one position per step: the careful decoder
    edited = run_json(capsys, "--strategy", "threshold", "--plugin", str(plugin), "--store", store)
    fresh = run_json(capsys, "--strategy", "threshold", "--plugin", str(plugin), "--store", str(tmp_path / "new.db"))
    assert edited["from_store"] == 0 and (edited["accuracy"], edited["nfe"]) == (fresh["accuracy"], fresh["nfe"])
    assert (first["accuracy"], first["nfe"]) != (edited["accuracy"], edited["nfe"])


def test_a_run_that_crashed_then_was_fixed_does_not_mix_the_two_versions(tmp_path, capsys):
    plugin, store = tmp_path / "rule.py", str(tmp_path / "r.db")
    # Version 1 decodes with k=8 and fails in its third batch (of 2 samples each).
    plugin.write_text(PLUGIN.format(k=8) + textwrap.dedent('''
        CALLS = []

        class Crash:
            @hookimpl
            def on_generation_end(self, results):
                CALLS.append(1)
                if len(CALLS) == 3:
                    raise RuntimeError("bug in the third batch")
        '''))
    assert cli(["run", "--limit", LIMIT, "--batch-size", "2", "--json", "--quiet", "--device", "cpu",
                "--strategy", "threshold", "--plugin", str(plugin), "--store", store]) == 2
    capsys.readouterr()
    plugin.write_text(PLUGIN.format(k=1))  # the fix
    fixed = run_json(capsys, "--batch-size", "2", "--strategy", "threshold", "--plugin", str(plugin), "--store", store)
    alone = run_json(capsys, "--batch-size", "2", "--strategy", "threshold", "--plugin", str(plugin),
                     "--store", str(tmp_path / "new.db"))
    assert fixed["from_store"] == 0 and fixed["accuracy"] == alone["accuracy"] and fixed["nfe"] == alone["nfe"]


STRATEGY = '''
import attrs
from workbench.decoding.registry import hookimpl

@attrs.frozen(eq=False, kw_only=True)
class Plug:
    main_threshold = "tau"
    tau: float = 0.9

    @hookimpl
    def promote(self, state):
        return state.is_mask & state.active & (state.conf >= self.tau * {scale})

STRATEGY = Plug
'''


def install(site, version: str, scale: str) -> None:
    for old in site.glob("wbplug-*.dist-info"):
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    info = site / f"wbplug-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: wbplug\nVersion: {version}\n")
    (info / "entry_points.txt").write_text("[workbench]\nplug = wbplug_strategy\n")
    (site / "wbplug_strategy.py").write_text(STRATEGY.format(scale=scale))


def test_an_upgraded_entry_point_strategy_is_another_run(tmp_path, monkeypatch):
    site = tmp_path / "site"
    install(site, "1.0", "1.0")
    monkeypatch.syspath_prepend(str(site))

    def fresh_key():
        sys.modules.pop("wbplug_strategy", None)
        strategy_identity.cache_clear()
        return spec(strategy="plug").config({})

    before = fresh_key()
    assert before["strategy_code"]["distribution"] == "wbplug" and before["strategy_code"]["version"] == "1.0"
    install(site, "2.0", "0.5")
    after = fresh_key()
    assert after["strategy_code"]["version"] == "2.0" and config_key(after) != config_key(before)
    install(site, "2.0", "0.25")  # same version number, other code (an editable install being edited)
    assert config_key(fresh_key()) != config_key(after)
    sys.modules.pop("wbplug_strategy", None)
    strategy_identity.cache_clear()


# -- 7: every setting that can change a sample ---------------------------------------------------------------
def test_batch_size_rng_and_noise_are_part_of_the_key(tmp_path, capsys):
    assert key(spec(batch_size=1)) != key(spec(batch_size=2))
    assert key(spec(decode=DecodeConfig(rng="batch"))) != key(spec(decode=DecodeConfig(rng="sample")))
    assert key(spec(decode=DecodeConfig(noise="mask"))) != key(spec(decode=DecodeConfig(noise="auto")))
    store = str(tmp_path / "r.db")
    run_json(capsys, "--strategy", "threshold", "--batch-size", "4", "--store", store)
    again = run_json(capsys, "--strategy", "threshold", "--batch-size", "2", "--store", store)
    assert again["from_store"] == 0  # decoded again in batches of 2, not served the batches of 4


def test_evaluate_refuses_a_spec_of_another_batch_size(tiny_model):
    from workbench.results.evaluate import evaluate
    from workbench.models.tokenizer import build_char_tokenizer
    from workbench.decoding.registry import make_manager

    with pytest.raises(ValueError, match="batch_size 8 differs"):
        evaluate(tiny_model, build_char_tokenizer(), load_task("choice"), make_manager("threshold"),
                 spec(batch_size=8), [], None, batch_size=4)


# -- 8: parameters resolved before keying; the main threshold's name is stored --------------------------------
def test_default_and_explicit_parameters_are_one_run():
    assert key(spec(params={})) == key(spec(params={"tau": 0.95})) == key(spec(params={"tau": 0.95, "factor": 1}))
    assert key(spec(params={"tau": 1})) == key(spec(params={"tau": 1.0}))
    assert key(spec(strategy="spd", params={"tau": 0.9})) == key(spec(strategy="spd", params={"tau_dec": 0.9}))
    stored = spec(strategy="spd", params={"tau": 0.9}).config({})
    assert stored["params"]["tau_dec"] == 0.9 and stored["params_set"] == {"tau_dec": 0.9}
    assert stored["main_threshold"] == "tau_dec"


def test_report_reads_a_run_whose_strategy_is_no_longer_installed(tmp_path, capsys):
    path = tmp_path / "gone.db"
    config = {**spec().config({}), "strategy": "uninstalled", "main_threshold": "t_hi",
              "params": {"t_hi": 0.3, "width": 2}, "params_set": {"t_hi": 0.3, "width": 2}}
    with ResultsStore(path) as store:
        k = store.ensure_run(config)
        store.add_sample(k, SampleRecord(index=0, prompt="p", output="o", expected="o", correct=True, nfe=2,
                                         tokens=4, seconds=0.1))
    assert cli(["report", "--store", str(path), "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["cells"]
    assert row["tau"] == 0.3 and row["params"] == {"width": 2}


# -- 9: the task's content -----------------------------------------------------------------------------------
def test_an_edited_jsonl_task_file_is_scored_again(tmp_path, capsys):
    prompts = [ex.prompt for ex in load_task("choice").eval_split(int(LIMIT))]
    path, store = tmp_path / "task.jsonl", str(tmp_path / "r.db")

    def write(answers):
        path.write_text("".join(json.dumps({"prompt": p, "answer": a}) + "\n" for p, a in zip(prompts, answers)))

    args = ("--strategy", "threshold", "--task", f"jsonl:{path}?match=exact", "--gen-length", "16", "--store", store)
    write(["?"] * len(prompts))
    assert run_json(capsys, *args)["accuracy"] == 0.0
    with ResultsStore(store, readonly=True) as db:
        outputs = [s.output.strip() for s in db.samples(db.runs()[0].key)]
    write(outputs)  # the same prompts, now with the model's own answers
    assert run_json(capsys, *args)["accuracy"] == 1.0
    write(["?"] * len(prompts))
    assert run_json(capsys, *args)["accuracy"] == 0.0


def test_synthetic_tasks_are_keyed_by_their_parameters():
    from workbench.results.provenance import task_identity

    assert task_identity(load_task("sum")) != task_identity(load_task("chain"))  # same class, other parameters
    a = spec(task="sum", task_content=task_identity(load_task("sum")))
    b = spec(task="sum", task_content=task_identity(load_task("sum", response_len=18)))
    assert key(a) != key(b)


def test_a_stored_sample_with_another_prompt_stops_the_run(tmp_path, capsys):
    from workbench.results.evaluate import StaleSamplesError, evaluate
    from workbench.models.loading import load_model
    from workbench.decoding.registry import make_manager
    from workbench.tasks.base import Example

    model, tokenizer = load_model("workbench/default_models/oput")
    task = load_task("choice")
    examples = task.eval_split(2)
    with ResultsStore(tmp_path / "r.db") as store:
        evaluate(model, tokenizer, task, make_manager("threshold"), spec(), examples, store, batch_size=64)
        changed = [examples[0], Example("12345678=", "", "", uid=1)]
        with pytest.raises(StaleSamplesError, match="holds sample 1"):
            evaluate(model, tokenizer, task, make_manager("threshold"), spec(), changed, store, batch_size=64)


# -- 12: report never merges runs that differ --------------------------------------------------------------
def _store_of(path, configs) -> str:
    with ResultsStore(path) as store:
        for n, config in enumerate(configs):
            k = store.ensure_run(config)
            for i in range(4):
                store.add_sample(k, SampleRecord(index=i, prompt=f"p{i}", output="o", expected="o", correct=i < n + 1,
                                                 nfe=2, tokens=4, seconds=0.1))
    return str(path)


def test_report_keeps_runs_that_differ_in_any_key_field_apart(tmp_path, capsys):
    base = spec().config({})
    variants = [base, {**base, "precision": "cpu/float64"}, {**base, "batch_size": 1},
                {**base, "task_content": {"sha256": "other"}}, {**base, "params": {**base["params"], "factor": 2.0}}]
    assert cli(["report", "--store", _store_of(tmp_path / "r.db", variants), "--format", "json"]) == 0
    cells = json.loads(capsys.readouterr().out)["cells"]
    assert len(cells) == len(variants) and all(c["n"] == 4 and c["seeds"] == [0] for c in cells)
    assert len({c["method"] for c in cells}) == len(variants)  # each labelled apart
    assert any("float64" in c["method"] for c in cells)


def test_report_shows_a_set_parameter_not_the_default(tmp_path, capsys):
    config = spec(strategy="spd", params={"tau": 0.9, "tau_acc": 0.8}).config({})
    assert cli(["report", "--store", _store_of(tmp_path / "r.db", [config]), "--format", "json"]) == 0
    (cell,) = json.loads(capsys.readouterr().out)["cells"]
    assert cell["tau"] == 0.9 and cell["params"] == {"tau_acc": 0.8}


# -- 13: observers and samples served from the store ------------------------------------------------------
OBSERVER = '''
from workbench.decoding.registry import hookimpl

class Count:
    @hookimpl
    def on_generation_end(self, results):
        for r in results:
            r.extras["seen"] = True
'''


def test_an_observer_only_plugin_is_not_a_separate_run_and_the_summary_says_it_was_skipped(tmp_path, capsys):
    observer, store = tmp_path / "watch.py", str(tmp_path / "r.db")
    observer.write_text(OBSERVER)
    plain = run_json(capsys, "--strategy", "threshold", "--store", store)
    watched = run_json(capsys, "--strategy", "threshold", "--plugin", str(observer), "--store", store)
    assert watched["from_store"] == int(LIMIT) and watched["observers"] == ["watch.py"]
    assert watched["accuracy"] == plain["accuracy"]
    assert cli(["run", "--limit", LIMIT, "--quiet", "--device", "cpu", "--strategy", "threshold", "--plugin",
                str(observer), "--store", store]) == 0
    out = capsys.readouterr().out
    assert "observers: watch.py ran on the 0 samples decoded now, not on the 6 read from" in " ".join(out.split())
    assert cli(["report", "--store", store, "--format", "json"]) == 0
    cells = json.loads(capsys.readouterr().out)["cells"]
    assert len(cells) == 1 and cells[0]["plugins"] == []  # one method, no `+watch.py` twin
