"""`workbench report` and `workbench plot` on a store written here with known per-sample results."""

from __future__ import annotations

import csv
import io
import json
import random
from collections import defaultdict

import pytest

from workbench.cli import main as cli
from workbench.results.metrics import aup_by_method, summarize
from workbench.results.store import ResultsStore, SampleRecord

N = 30
MAIN = {"threshold": "tau", "spd": "tau_dec"}
# (strategy, trainer, tau) -> accuracy; TPF grows as tau falls.
ACCURACY = {
    ("threshold", "mdlm", 0.95): 0.90, ("threshold", "mdlm", 0.5): 0.85, ("threshold", "mdlm", 0.0): 0.60,
    ("spd", "mdlm", 0.95): 0.80, ("spd", "mdlm", 0.5): 0.20, ("spd", "mdlm", 0.0): 0.05,
    ("threshold", "oput", 0.95): 0.90, ("threshold", "oput", 0.5): 0.88, ("threshold", "oput", 0.0): 0.70,
    ("spd", "oput", 0.95): 0.92, ("spd", "oput", 0.5): 0.90, ("spd", "oput", 0.0): 0.87,
}


def config(strategy, trainer, tau, seed):
    return {"strategy": strategy, "params": {MAIN[strategy]: tau}, "plugins": [], "providers": {},
            "trainer": trainer, "model_hash": f"hash-{trainer}", "task": "sum", "split": "eval",
            "decode": {"block_size": 8, "max_new_tokens": 16, "max_forwards_per_block": None, "temperature": 0.0,
                       "seed": seed}, "version": "test"}


def write_store(path, seeds=(0,), cells=ACCURACY):
    with ResultsStore(path) as store:
        for (strategy, trainer, tau), acc in ((c, ACCURACY[c]) for c in cells):
            for seed in seeds:
                rng = random.Random(f"{strategy}/{trainer}/{tau}/{seed}")
                key = store.ensure_run(config(strategy, trainer, tau, seed))
                right = set(rng.sample(range(N), round(acc * N)))
                for i in range(N):
                    nfe = 16 if tau == 0.95 else 8 if tau == 0.5 else rng.choice([2, 3, 4])
                    extras = {"revisions": rng.randrange(3)} if strategy == "spd" else {}
                    store.add_sample(key, SampleRecord(
                        index=i, prompt=f"p{i}", output="x", expected="y", correct=i in right, nfe=nfe,
                        tokens=16, seconds=0.01 + rng.random() / 100, extras=extras))
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("report") / "grid.db")


def report(capsys, *args):
    assert cli(["report", *args]) == 0
    return capsys.readouterr().out


def test_markdown_has_every_cell_and_marks(store, capsys):
    out = report(capsys, "--store", str(store), "--format", "markdown")
    lines = [line for line in out.splitlines() if line.startswith("| ")]
    for (strategy, trainer, tau) in ACCURACY:
        assert any(line.startswith(f"| {strategy} | {trainer} | {tau:g} |") for line in lines), (strategy, tau)
    # spd x mdlm at tau 0 (5 %) against threshold x mdlm at 0.95 (90 %): far beyond p < 0.01
    row = next(line for line in lines if line.startswith("| spd | mdlm | 0 |"))
    assert "**" in row and "[" in row  # McNemar mark and bootstrap CI
    ref = next(line for line in lines if line.startswith("| threshold | oput | 0.95 |"))
    assert "| ref |" in ref
    assert "## AUP per method" in out


def test_json_aup_equals_metrics_on_stored_points(store, capsys):
    data = json.loads(report(capsys, "--store", str(store), "--format", "json"))
    assert len(data["cells"]) == len(ACCURACY)
    curves = defaultdict(list)
    with ResultsStore(store) as s:
        for run in s.runs():
            summary = summarize(s.samples(run.key))
            curves[f"{run.config['strategy']} × {run.config['trainer']}"].append((summary.tpf, 100 * summary.accuracy))
    expected = aup_by_method(curves)
    got = {e["method"]: e["aup"] for e in data["aup"]}
    assert got == pytest.approx(expected, rel=1e-12)
    assert [e["aup"] for e in data["aup"]] == sorted(got.values(), reverse=True)  # ranked
    spd = [c for c in data["cells"] if c["strategy"] == "spd"]
    assert all(c["revisions"] is not None for c in spd)
    assert all(c["revisions"] is None for c in data["cells"] if c["strategy"] == "threshold")


def test_csv_parses(store, capsys):
    rows = list(csv.DictReader(io.StringIO(report(capsys, "--store", str(store), "--format", "csv"))))
    assert len(rows) == len(ACCURACY)
    for row in rows:
        key = (row["strategy"], row["trainer"], float(row["tau"]))
        assert float(row["accuracy"]) == pytest.approx(100 * round(ACCURACY[key] * N) / N)


def test_reference_option_and_table(store, capsys):
    data = json.loads(report(capsys, "--store", str(store), "--format", "json", "--reference", "spd@0.5"))
    refs = [c for c in data["cells"] if c["is_reference"]]
    assert {(c["strategy"], c["tau"]) for c in refs} == {("spd", 0.5)} and len(refs) == 2
    out = report(capsys, "--store", str(store))
    assert "ablation grid" in out and "AUP per method" in out


def test_several_seeds_show_mean_and_std(tmp_path, capsys):
    cells = [c for c in ACCURACY if c[1] == "mdlm"]
    store = write_store(tmp_path / "seeds.db", seeds=(0, 1, 2), cells=cells)
    data = json.loads(report(capsys, "--store", str(store), "--format", "json"))
    assert len(data["cells"]) == len(cells) and all(c["seeds"] == [0, 1, 2] for c in data["cells"])
    assert all(c["accuracy_std"] is not None and c["n"] == 3 * N for c in data["cells"])
    assert "±" in report(capsys, "--store", str(store), "--format", "markdown")


def test_plot_writes_png_and_svg(store, tmp_path, capsys):
    out = tmp_path / "figures"
    assert cli(["plot", "--store", str(store), "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert names == {"accuracy_vs_tpf.png", "accuracy_vs_tpf.svg", "aup.png", "aup.svg"}
    assert all(p.stat().st_size > 1000 for p in out.iterdir())
    assert (out / "aup.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_store_exits_2(tmp_path, capsys):
    assert cli(["report", "--store", str(tmp_path / "none.db")]) == 2
    assert cli(["plot", "--store", str(tmp_path / "none.db"), "--out", str(tmp_path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 2


def test_a_run_nobody_checked_has_no_accuracy_rather_than_zero(tmp_path, capsys):
    """lm-eval runs without check= store `checked: false`: their `correct` means nothing, so the report
    shows no accuracy for them (not 0 %), and they stay out of AUP and significance."""
    path = write_store(tmp_path / "r.db", cells=[("threshold", "oput", 0.95)])
    with ResultsStore(path) as store:
        key = store.ensure_run({**config("threshold", "oput", 0.5, 0), "task": "lm-eval:gsm8k"})
        for i in range(5):
            store.add_sample(key, SampleRecord(index=i, prompt=f"p{i}", output="x", expected=None, correct=False,
                                               nfe=4, tokens=8, seconds=0.01, extras={"checked": False}))
    rows = {r["task"]: r for r in json.loads(report(capsys, "--store", str(path), "--format", "json"))["cells"]}
    assert rows["lm-eval:gsm8k"]["accuracy"] is None and rows["lm-eval:gsm8k"]["aup"] is None
    assert rows["sum"]["accuracy"] == pytest.approx(90.0)
    table = report(capsys, "--store", str(path))
    assert "lm-eval:gsm8k" in table
