"""Two processes on one run (issue 15, item 7): a claimed run is waited for or put off, never decoded twice,
and a killed holder never blocks the next process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from test_ablate import make_model_dir
from workbench.results.runlock import RunBusy, RunLocks

REPO = Path(__file__).resolve().parent.parent
KEY = "ab" * 32

pytest.importorskip("fcntl")

HOLDER = textwrap.dedent("""
    import sys, time
    from workbench.results.runlock import RunLocks
    with RunLocks(sys.argv[1]) as locks, locks.claim(sys.argv[2]):
        print("claimed", flush=True)
        time.sleep(60)
""")


def test_a_claim_held_elsewhere_is_busy_until_its_process_dies(tmp_path):
    store = tmp_path / "r.db"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(store), KEY], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "claimed"
        with RunLocks(store) as locks:
            with pytest.raises(RunBusy, match="another process is decoding run"):
                with locks.claim(KEY, wait=False):
                    pass
            with locks.claim("cd" * 32, wait=False):  # another run of the same store is free
                pass
            holder.send_signal(signal.SIGKILL)  # no cleanup: the kernel drops the lock
            holder.wait(timeout=10)
            said = []
            with locks.claim(KEY, wait=True, on_wait=said.append):
                pass
    finally:
        holder.kill()
        holder.wait()


def ablate_args(model_dir: Path, store: Path) -> list[str]:
    return ["ablate", "--model-dir", str(model_dir), "--strategies", "threshold", "--trainers", "mdlm",
            "--tau", "0.9,0.5,0", "--limit", "3", "--batch-size", "1", "--gen-length", "8", "--store", str(store),
            "--json"]


def test_ablate_puts_off_a_cell_another_process_decodes_then_reuses_it(tmp_path, capsys):
    """This test process plays the other ablation: it holds the claim of the first cell while `ablate` runs."""
    from workbench.cli import main as cli
    from workbench.results.store import ResultsStore

    model_dir = make_model_dir(tmp_path / "models", trainers=("mdlm",))
    assert cli(ablate_args(model_dir, tmp_path / "keys.db")) == 0  # learn the cells' run keys
    capsys.readouterr()
    with ResultsStore(tmp_path / "keys.db", readonly=True) as keys:
        first_cell = min(keys.runs(), key=lambda r: -r.config["params"]["tau"]).key  # tau 0.9, decoded first
    store = tmp_path / "shared.db"
    locks = RunLocks(store)
    claim = locks.claim(first_cell)
    claim.__enter__()
    proc = subprocess.Popen([sys.executable, "-m", "workbench", *ablate_args(model_dir, store)],
                            env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()  # blocks until ablate says it waits (or exits: an empty line)
        assert "another process is decoding run threshold tau=0.9 on mdlm" in line, line + proc.stderr.read()
        with ResultsStore(store, readonly=True) as seen:
            decoded = {r.config["params"]["tau"]: r.n_samples for r in seen.runs()}
        assert decoded == {0.5: 3, 0.0: 3}  # the other cells are done; the claimed one was left alone
    finally:
        claim.__exit__(None, None, None)  # the "other process" ends without decoding: ablate takes over
        locks.close()
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    report = json.loads(out)
    assert sorted(c["tau"] for c in report["cells"]) == [0.0, 0.5, 0.9] and all(c["n"] == 3 for c in report["cells"])
