"""`workbench run` and `workbench list` end to end, as a user runs them: on the shipped default models,
for every strategy and trainer, with the JSON keys the issue names; bad input exits 2 with one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from workbench.decoding.registry import DECISION_HOOKS
import torch

from workbench.cli import main as cli
from workbench.models.folders import DEFAULT_MODELS

KEYS = {"strategy", "trainer", "model", "task", "n", "accuracy", "tpf", "tps", "nfe", "tokens"}


def run_json(capsys, *args) -> dict:
    assert cli(["run", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("trainer", ["base", "mdlm", "uniform", "oput"])
@pytest.mark.parametrize("strategy", ["threshold", "hierarchical", "hard", "spd"])
def test_every_strategy_on_every_shipped_model(strategy, trainer, tmp_path, capsys):
    result = run_json(capsys, "--strategy", strategy, "--trainer", trainer, "--limit", "16",
                      "--store", str(tmp_path / "r.db"))
    assert KEYS <= set(result)
    assert result["strategy"] == strategy and result["trainer"] == trainer and result["task"] == "choice"
    assert result["n"] == 16 and 0.0 <= result["accuracy"] <= 1.0
    assert result["nfe"] > 0 and result["tokens"] > 0 and result["tpf"] == pytest.approx(
        result["tpf"]) and result["tps"] > 0
    assert set(result["decisions"]) == set(DECISION_HOOKS) - {"guidance"}  # opt-in: listed when implemented


def test_careful_decoding_beats_aggressive_on_the_shipped_base(tmp_path, capsys):
    store = str(tmp_path / "r.db")
    careful = run_json(capsys, "--strategy", "threshold", "--trainer", "base", "--tau", "0.95", "--limit", "100",
                       "--store", store)
    aggressive = run_json(capsys, "--strategy", "threshold", "--trainer", "base", "--tau", "0", "--limit", "100",
                          "--store", store)
    assert careful["accuracy"] >= 0.9
    assert aggressive["accuracy"] <= careful["accuracy"] - 0.2
    assert aggressive["tpf"] > 2 * careful["tpf"]


def test_revisions_on_the_oput_model_fix_more_answers_than_they_break(tmp_path, capsys):
    spd = run_json(capsys, "--strategy", "spd", "--trainer", "oput", "--limit", "50", "--store", str(tmp_path / "r.db"))
    assert spd["revisions"] > 0 and spd["revisions_fixed"] > spd["revisions_broke"]
    threshold = run_json(capsys, "--strategy", "threshold", "--trainer", "oput", "--limit", "20",
                         "--store", str(tmp_path / "r.db"))
    assert threshold["revisions_fixed"] == threshold["revisions_broke"] == 0  # promoted tokens are final there


def test_rerun_reuses_the_stored_samples(tmp_path, capsys):
    args = ("--strategy", "spd", "--trainer", "oput", "--limit", "8", "--store", str(tmp_path / "r.db"))
    first = run_json(capsys, *args)
    again = run_json(capsys, *args)
    assert (first.pop("from_store"), again.pop("from_store")) == (0, 8)
    assert first == again  # timings too: nothing was decoded again


def test_plugin_that_only_promotes_combines_with_spd(tmp_path, capsys):
    plugin = tmp_path / "leftmost.py"
    plugin.write_text(
        "from workbench.decoding.registry import hookimpl\n\n"
        "class Leftmost:\n"
        "    @hookimpl\n"
        "    def promote(self, state):\n"
        "        open_ = state.is_mask & state.active\n"
        "        return open_ & (open_.long().cumsum(-1) == 1)\n"
    )
    result = run_json(capsys, "--strategy", "spd", "--trainer", "oput", "--plugin", str(plugin), "--limit", "4",
                      "--store", str(tmp_path / "r.db"))
    assert result["decisions"]["promote"].startswith("leftmost")
    assert {result["decisions"][h] for h in ("embed_state", "converge", "commit")} == {"spd"}


@pytest.mark.parametrize("args, needle", [
    (["--strategy", "nosuch"], "unknown strategy 'nosuch'"),
    (["--tau", "1.5"], "must be a number in [0, 1], got 1.5"),
    (["--model", "/nonexistent/model"], "does not exist"),
    (["--trainer", "nosuch"], "no shipped model for trainer 'nosuch'"),
    (["--task", "nosuch"], "unknown task"),
    (["--set", "tau_acc"], "write --set name=value"),
    (["--set", "nosuch=1"], "has no parameter 'nosuch'"),
])
def test_bad_input_exits_2_with_one_line(args, needle, tmp_path, capsys):
    assert cli(["run", *args, "--store", str(tmp_path / "r.db")]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_precision_is_part_of_the_run(tmp_path, capsys):
    """bfloat16 weights may flip near-tied argmaxes, so a bfloat16 run never reuses float32 samples."""
    args = ("--strategy", "spd", "--trainer", "oput", "--limit", "6", "--store", str(tmp_path / "r.db"))
    run_json(capsys, *args, "--dtype", "float32")
    run_json(capsys, *args, "--dtype", "bfloat16")
    from workbench.results.store import ResultsStore

    with ResultsStore(str(tmp_path / "r.db")) as store:
        precisions = sorted(run.config["precision"] for run in store.runs())
    assert precisions == ["cpu/bfloat16", "cpu/float32"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_refused(tmp_path, capsys):
    assert cli(["run", "--device", "cuda", "--limit", "2", "--store", str(tmp_path / "r.db")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no CUDA device" in err and "--device cpu" in err


def test_corrupt_checkpoint_is_named(tmp_path, capsys):
    folder = tmp_path / "broken"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((DEFAULT_MODELS / "oput" / name).read_bytes())
    (folder / "model.safetensors").write_bytes(b"\x00garbage")
    assert cli(["run", "--model", str(folder), "--store", str(tmp_path / "r.db")]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_list_shows_the_four_strategies_and_shipped_models(capsys):
    assert cli(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert {"threshold", "hierarchical", "hard", "spd"} <= {s["name"] for s in listing["strategies"]}
    assert set(listing["models"]) == {"base", "mdlm", "uniform", "oput"}
    assert {"mdlm", "uniform", "oput"} == set(listing["trainers"])


def test_the_console_script_runs_the_main_job(tmp_path):
    done = subprocess.run([sys.executable, "-m", "workbench", "run", "--strategy", "spd", "--trainer", "oput",
                           "--limit", "32", "--store", str(tmp_path / "r.db")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "accuracy" in done.stdout and "decisions: embed_state=spd" in done.stdout


def test_masked_outputs_are_said_in_the_summary_and_the_json(tmp_path, capsys):
    """DMax's fill_at_cap=false leaves positions masked at the forward cap: the run says how many."""
    store = str(tmp_path / "r.db")
    args = ["run", "--strategy", "hard", "--trainer", "base", "--set", "fill_at_cap=false", "--set", "tau_dec=1.0",
            "--max-forwards", "2", "--limit", "8", "--store", store]
    result = run_json(capsys, *args[1:])
    assert result["unfilled_samples"] > 0 and result["unfilled_positions"] >= result["unfilled_samples"]
    assert cli(args) == 0
    assert "positions masked" in " ".join(capsys.readouterr().out.split())
