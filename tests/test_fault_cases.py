"""Faults that used to end in a traceback, a wrong count or interleaved output (issue 21, item 7): each is now
one line naming what to fix, a lock, or the right number."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.cli import main as cli
from workbench.decoding.registry import PluginSkippedWarning, available_strategies
from workbench.runtime.outputs import OutputBusy, exclusive_output

REPO = Path(__file__).resolve().parent.parent


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def exiting_distribution(tmp_path, monkeypatch) -> Path:
    """A distribution whose strategy module calls sys.exit() at import."""
    site = tmp_path / "site"
    info = site / "exiting_wb_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: exiting-wb-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[workbench]\nexiting = exiting_wb_plugin\n")
    (site / "exiting_wb_plugin.py").write_text("import sys\nsys.exit('no GPU found')\n")
    monkeypatch.syspath_prepend(str(site))
    return site


def test_an_entry_point_that_exits_at_import_is_skipped_by_list(exiting_distribution):
    with pytest.warns(PluginSkippedWarning, match=r"exiting-wb-plugin 1\.0.*SystemExit.*no GPU found"):
        names = [s.name for s in available_strategies()]
    assert "exiting" not in names and "threshold" in names


def test_asking_for_an_exiting_entry_point_is_one_line(exiting_distribution, tmp_path, capsys):
    assert cli(["run", "--strategy", "exiting", "--store", str(tmp_path / "r.db")]) == 2
    assert "exiting-wb-plugin 1.0" in one_error_line(capsys)


def test_plugins_lists_the_others_beside_an_exiting_entry_point(exiting_distribution, capsys):
    assert cli(["plugins", "--json"]) == 0
    assert "threshold" in capsys.readouterr().out


def test_a_second_writer_of_one_output_is_refused(tmp_path):
    out = tmp_path / "data.jsonl"
    with exclusive_output(out, "distill"):
        code = (f"import sys; sys.path.insert(0, {str(REPO)!r})\nfrom workbench.runtime.outputs import "
                f"exclusive_output\ntry:\n    with exclusive_output({str(out)!r}, 'distill'):\n        pass\n"
                f"except ValueError as e:\n    print(e)")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "another `workbench distill` is writing" in done.stdout and str(out) in done.stdout
    with exclusive_output(out, "distill"):  # released: the next run takes it
        pass


def test_distill_and_train_hold_their_output(tmp_path, monkeypatch, capsys):
    out = tmp_path / "d.jsonl"
    held = []

    import workbench.runtime.outputs as outputs

    real = outputs.exclusive_output

    def spy(path, command):
        held.append((Path(path).name, command))
        return real(path, command)

    monkeypatch.setattr(outputs, "exclusive_output", spy)
    assert cli(["distill", "--strategy", "threshold", "--count", "2", "--out", str(out), "--quiet"]) == 0
    assert cli(["train", "--preset", "micro", "--steps", "1", "--eval-limit", "0",
                "--out", str(tmp_path / "m"), "--quiet"]) == 0
    assert held == [("d.jsonl", "distill"), ("m", "train")]


def test_train_into_an_output_another_process_writes_is_one_line(tmp_path, capsys):
    out = tmp_path / "m"
    with exclusive_output(out, "train"):
        # flock is per open file: the same process opening the lock again is refused like another process.
        assert cli(["train", "--preset", "micro", "--out", str(out), "--quiet"]) == 2
    assert "another `workbench train` is writing" in one_error_line(capsys)


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_train_data_with_a_huge_prompt_is_refused_before_training(tmp_path, capsys):
    data = _jsonl(tmp_path / "d.jsonl", [{"prompt": "1+2=", "answer": "3"}, {"prompt": "9" * 100_000, "answer": "1"}])
    assert cli(["train", "--preset", "micro", "--data", str(data), "--out", str(tmp_path / "m"), "--quiet"]) == 2
    err = one_error_line(capsys)
    assert "--data" in err and "example 2" in err and "at most" in err


def test_train_data_with_an_answer_too_long_is_named(tmp_path, capsys):
    data = _jsonl(tmp_path / "d.jsonl", [{"prompt": "1+2=", "answer": "3" * 500}])
    assert cli(["train", "--preset", "micro", "--data", str(data), "--out", str(tmp_path / "m"), "--quiet"]) == 2
    assert "example 1 has an answer of 500 tokens" in one_error_line(capsys)


def test_train_data_that_does_not_exist_names_the_option(tmp_path, capsys):
    assert cli(["train", "--preset", "micro", "--data", str(tmp_path / "nosuch.jsonl"),
                "--out", str(tmp_path / "m"), "--quiet"]) == 2
    err = one_error_line(capsys)
    assert "--data" in err and "--task" not in err


def test_distill_refuses_a_prompt_the_model_cannot_take(tmp_path, capsys):
    task = _jsonl(tmp_path / "t.jsonl", [{"prompt": "7" * 100_000, "answer": "1"}])
    assert cli(["distill", "--strategy", "threshold", "--task", f"jsonl:{task}", "--count", "1",
                "--out", str(tmp_path / "d.jsonl"), "--quiet"]) == 2
    assert "training prompt" in one_error_line(capsys)


@pytest.mark.parametrize("where", ["task", "set"])
def test_json_nested_deeper_than_the_parser_goes_is_one_line(tmp_path, capsys, where):
    deep = "[" * 100_000 + "]" * 100_000
    if where == "task":
        path = tmp_path / "deep.jsonl"
        path.write_text('{"prompt": ' + deep + ', "answer": "1"}\n')
        argv = ["run", "--strategy", "threshold", "--task", f"jsonl:{path}"]
    else:
        argv = ["run", "--strategy", "threshold", "--set", f"tau_x={deep}"]
    assert cli([*argv, "--store", str(tmp_path / "r.db"), "--quiet"]) == 2
    assert "nested too deeply" in one_error_line(capsys)


def test_a_tensor_of_another_shape_is_named(tmp_path, capsys):
    import shutil

    from safetensors.torch import load_file, save_file

    from workbench.models.folders import default_model_path

    folder = tmp_path / "m"
    shutil.copytree(default_model_path("oput"), folder)
    weights = load_file(folder / "model.safetensors")
    weights["layers.0.attn.qkv.weight"] = weights["layers.0.attn.qkv.weight"][:-8]
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    assert cli(["run", "--model", str(folder), "--strategy", "threshold", "--limit", "2",
                "--store", str(tmp_path / "r.db")]) == 2
    assert "of another shape layers.0.attn.qkv.weight" in one_error_line(capsys)


def test_report_on_a_folder_says_it_is_a_folder(tmp_path, capsys):
    assert cli(["report", "--store", str(tmp_path)]) == 2
    assert "is a folder" in one_error_line(capsys)


def test_a_full_disk_while_distilling_names_the_file(tmp_path):
    from workbench.training.distill import _append

    path = tmp_path / "d.jsonl"
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    os.fsync = full
    try:
        with pytest.raises(OSError) as err:
            _append(path, [{"prompt": "a", "answer": "b"}])
    finally:
        os.fsync = real_fsync
    assert err.value.filename == str(path) and err.value.errno == errno.ENOSPC


def test_ablate_counts_what_it_reused_not_what_was_stored_when_it_started(tmp_path, capsys):
    store = str(tmp_path / "r.db")
    argv = ["ablate", "--strategies", "threshold", "--trainers", "oput", "--tau", "0.9", "--limit", "3",
            "--store", store, "--quiet"]
    assert cli(argv) == 0
    assert "(0 reused from" in capsys.readouterr().out
    assert cli(argv) == 0
    assert "(3 reused from" in capsys.readouterr().out


def test_an_inherited_ignored_sigint_stays_ignored_during_start_up():
    code = ("import signal, sys\nsys.path.insert(0, %r)\nfrom workbench.cli import _StartupInterrupts\n"
            "with _StartupInterrupts():\n    inside = signal.getsignal(signal.SIGINT)\n"
            "print(inside is signal.SIG_IGN)" % str(REPO))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert done.stdout.strip() == "True"


def stderr_on_a_terminal(argv: list[str], cwd: Path) -> str:
    """What the CLI writes to stderr when stderr is a terminal (a pseudo-terminal here), as a person sees it."""
    import pty

    leader, follower = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "120"}
    proc = subprocess.Popen([sys.executable, "-m", "workbench", *argv], stdout=subprocess.DEVNULL, stderr=follower,
                            cwd=cwd, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=300)
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize("argv", [
    ["run", "--strategy", "threshold", "--limit", "8"],
    ["check-plugin", "threshold", "--strategies", "threshold", "--examples", "2"],
])
def test_long_commands_show_progress_on_a_terminal_and_quiet_silences_it(argv, tmp_path):
    store = ["--store", str(tmp_path / "r.db")] if argv[0] == "run" else []
    assert stderr_on_a_terminal([*argv, *store], tmp_path).strip()  # a bar or a spinner was drawn
    store = ["--store", str(tmp_path / "q.db")] if argv[0] == "run" else []
    assert stderr_on_a_terminal([*argv, *store, "--quiet"], tmp_path).strip() == ""
