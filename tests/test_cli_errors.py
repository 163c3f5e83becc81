"""Errors a user can act on (issue 15, items 12 and 17): one line on stderr and exit 2, never a traceback;
Ctrl-C exits 130 with one line saying what was kept, even while the program is still starting."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_ablate import make_model_dir
from test_report import write_store
from workbench.cli import main as cli

REPO = Path(__file__).resolve().parent.parent


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("models"), trainers=("mdlm",))


# -- report --reference ---------------------------------------------------------------------------------------


def test_report_reference_outside_the_store_lists_the_choices(tmp_path, capsys):
    store = write_store(tmp_path / "grid.db")
    assert cli(["report", "--store", str(store), "--reference", "nosuch"]) == 2
    err = one_error_line(capsys)
    assert "'nosuch'" in err and "threshold" in err and "spd" in err
    assert cli(["report", "--store", str(store), "--reference", "threshold@0.3"]) == 2
    assert "its taus: 0.95, 0.5, 0" in one_error_line(capsys)


def test_ablate_checks_the_reference_before_decoding(model_dir, tmp_path, capsys):
    store = tmp_path / "s.db"
    assert cli(["ablate", "--model-dir", str(model_dir), "--strategies", "threshold", "--trainers", "mdlm",
                "--tau", "0.9", "--reference", "spd", "--store", str(store)]) == 2
    assert "'spd'" in one_error_line(capsys)
    assert not store.exists()  # refused before anything was decoded


# -- counts given as 0 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [
    ["run", "--strategy", "threshold"],
    ["trace", "--strategy", "threshold"],
    ["ablate", "--strategies", "threshold", "--trainers", "oput", "--tau", "0.9"],
])
@pytest.mark.parametrize("option, needle", [
    (["--block-size", "0"], "--block-size 0: give a positive number of positions per block"),
    (["--gen-length", "0"], "--gen-length 0: give a positive number of generated positions"),
    (["--batch-size", "0"], "--batch-size 0: give a positive number of prompts"),
])
def test_zero_counts_are_refused_before_the_model_loads(command, option, needle, tmp_path, monkeypatch, capsys):
    if command[0] == "trace" and option[0] == "--batch-size":
        pytest.skip("trace decodes one sample")

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr("workbench.models.loading.load_model", no_loading)
    store = ["--store", str(tmp_path / "r.db")] if command[0] != "trace" else []
    assert cli([*command, *option, *store]) == 2
    assert needle in one_error_line(capsys)


def test_generated_ids_beyond_the_vocabulary_decode_as_a_replacement_character():
    from workbench.models.tokenizer import UNKNOWN_TEXT, build_char_tokenizer, decode, encode

    tokenizer = build_char_tokenizer()
    ids = encode(tokenizer, "12") + [len(tokenizer), len(tokenizer) + 40] + encode(tokenizer, "3")
    assert decode(tokenizer, ids) == "12" + 2 * UNKNOWN_TEXT + "3"


# -- one line instead of a traceback --------------------------------------------------------------------------


def test_a_bad_strategy_value_is_one_line_without_the_attrs_dump(tmp_path, capsys):
    assert cli(["run", "--strategy", "threshold", "--set", "rule=bad", "--store", str(tmp_path / "r.db")]) == 2
    err = one_error_line(capsys)
    assert "'rule' must be in ('threshold', 'factor') (got 'bad')" in err and "Attribute(" not in err


def test_a_model_folder_without_its_tokenizer_is_named(tmp_path, capsys):
    from workbench.models.folders import DEFAULT_MODELS

    folder = tmp_path / "copied-without-tokenizer"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        (folder / name).write_bytes((DEFAULT_MODELS / "oput" / name).read_bytes())
    assert cli(["run", "--model", str(folder), "--limit", "1", "--store", str(tmp_path / "r.db")]) == 2
    assert f"{folder} holds no tokenizer.json" in one_error_line(capsys)


def test_an_output_path_that_is_a_file_or_on_a_readonly_disk_is_one_line(tmp_path, capsys):
    from faults import make_readonly, readonly_folder

    store = write_store(tmp_path / "grid.db")
    in_the_way = tmp_path / "figures"
    in_the_way.write_text("a file where the folder should go")
    assert cli(["plot", "--store", str(store), "--out", str(in_the_way)]) == 2
    assert "figures" in one_error_line(capsys)
    with readonly_folder(tmp_path / "ro") as folder:
        make_readonly(folder)
        assert cli(["plot", "--store", str(store), "--out", str(folder / "figures")]) == 2
        assert "writable" in one_error_line(capsys)
        assert cli(["trace", "--strategy", "threshold", "--html", str(folder / "t.html")]) == 2
        assert "writable" in one_error_line(capsys)


def test_a_full_disk_during_training_and_decoding_is_one_line(tmp_path, capsys):
    from faults import small_disk

    with small_disk(tmp_path / "tiny", size=96 << 10) as disk:
        assert cli(["train", "--preset", "micro", "--steps", "2", "--eval-limit", "0", "--quiet",
                    "--out", str(disk / "model")]) == 2
        assert "disk is full" in one_error_line(capsys)
    with small_disk(tmp_path / "tiny2", size=48 << 10) as disk:
        assert cli(["run", "--strategy", "threshold", "--limit", "200", "--store", str(disk / "r.db")]) == 2
        assert "disk is full" in one_error_line(capsys)


def test_os_errors_name_the_path_and_the_fix(monkeypatch, tmp_path, capsys):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "aup.png"))

    monkeypatch.setattr("workbench.commands.plot.plot_report", full)
    assert cli(["plot", "--store", str(write_store(tmp_path / "g.db")), "--out", str(tmp_path)]) == 2
    err = one_error_line(capsys)
    assert str(tmp_path / "aup.png") in err and "free some space" in err


@pytest.mark.parametrize("delay", [0.3, 1.0, 2.5])
def test_ctrl_c_while_starting_is_one_line_and_exit_130(delay, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "workbench", "run", "--limit", "2", "--store",
                             str(tmp_path / "r.db")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and "interrupted" in err
