"""`workbench ablate`: a killed ablation resumes without recomputing finished samples; bad input exits 2."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from recorder_plugin import RECORDER
from workbench.cli import main as cli
from workbench.models.native import build_random_model
from workbench.models.tokenizer import build_char_tokenizer

REPO = Path(__file__).resolve().parent.parent



def make_model_dir(root: Path, trainers=("mdlm", "oput")) -> Path:
    tokenizer = build_char_tokenizer()
    for i, trainer in enumerate(trainers):
        model = build_random_model(len(tokenizer), seed=i, hidden_size=32, num_layers=2, num_heads=2, block_size=8)
        model.save_pretrained(root / trainer)
        tokenizer.save_pretrained(root / trainer)
    return root


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("models"))


def grid_args(model_dir: Path, store: Path, plugin: Path) -> list[str]:
    return ["ablate", "--model-dir", str(model_dir), "--strategies", "threshold,spd", "--trainers", "mdlm,oput",
            "--tau", "0.9,0", "--limit", "4", "--batch-size", "1", "--gen-length", "8", "--plugin", str(plugin),
            "--store", str(store), "--json"]


def stored_rows(store: Path) -> dict[tuple[str, int], tuple]:
    with closing(sqlite3.connect(store)) as conn:
        rows = conn.execute("SELECT run_key, idx, output, correct, nfe, tokens, seconds, extras_json FROM samples")
        return {(r[0], r[1]): r[2:] for r in rows}


def stored_count(store: Path) -> int:
    """Rows stored so far; 0 while the writer has created the file but not yet its schema."""
    try:
        return len(stored_rows(store)) if store.exists() else 0
    except sqlite3.OperationalError:
        return 0


def recorded(path: Path) -> int:
    return sum(int(line) for line in path.read_text().split()) if path.exists() else 0


def test_resume_after_kill_recomputes_nothing_finished(model_dir, tmp_path, monkeypatch, capsys):
    plugin = tmp_path / "recorder.py"
    plugin.write_text(RECORDER)
    total = 2 * 2 * 2 * 4  # strategies x trainers x taus x samples
    store = tmp_path / "killed.db"
    env = {**os.environ, "WB_RECORD": str(tmp_path / "killed.rec"), "WB_SLEEP": "0.05", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "workbench", *grid_args(model_dir, store, plugin)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if stored_count(store) >= 6:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the ablation finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    before = stored_rows(store)
    assert 6 <= len(before) < total

    monkeypatch.setenv("WB_SLEEP", "0")
    monkeypatch.setenv("WB_RECORD", str(tmp_path / "resumed.rec"))
    assert cli(grid_args(model_dir, store, plugin)) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["cells"]) == 8 and all(c["n"] == 4 for c in report["cells"])
    after = stored_rows(store)
    assert recorded(tmp_path / "resumed.rec") == total - len(before)  # only the missing samples were decoded
    assert {k: after[k] for k in before} == before  # finished samples untouched (same wall times)

    monkeypatch.setenv("WB_RECORD", str(tmp_path / "fresh.rec"))
    fresh_store = tmp_path / "fresh.db"
    assert cli(grid_args(model_dir, fresh_store, plugin)) == 0
    capsys.readouterr()
    fresh = stored_rows(fresh_store)
    assert recorded(tmp_path / "fresh.rec") == total
    strip = lambda rows: {k: v[:4] + (json.loads(v[5]),) for k, v in rows.items()}  # all but the wall time
    assert strip(after) == strip(fresh)
    assert all("revisions" in json.loads(v[5]) for v in fresh.values())


@pytest.mark.parametrize("change, needle", [
    (["--strategies", "threshold,nosuch"], "unknown strategy 'nosuch'"),
    (["--tau", "0.5,1.5"], "must be a number in [0, 1], got 1.5"),
    (["--trainers", "mdlm,nosuch"], "unknown trainer 'nosuch'"),
    (["--set", "nosuch=1"], "no strategy"),
])
def test_bad_input_exits_2_with_one_line(model_dir, tmp_path, capsys, change, needle):
    args = ["ablate", "--model-dir", str(model_dir), "--strategies", "threshold", "--trainers", "mdlm",
            "--tau", "0.9", "--store", str(tmp_path / "s.db")]
    option, value = change
    if option in args:
        args[args.index(option) + 1] = value
    else:
        args += change
    assert cli(args) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s.db").exists()  # nothing decoded, nothing stored


def test_unknown_trainer_without_model_dir_exits_2(capsys):
    assert cli(["ablate", "--trainers", "nosuch", "--strategies", "threshold", "--tau", "0.9"]) == 2
    assert "unknown trainer 'nosuch'" in capsys.readouterr().err
