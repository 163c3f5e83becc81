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

    monkeypatch.setattr("workbench.commands.common.load_model", no_loading)
    store = ["--store", str(tmp_path / "r.db")] if command[0] != "trace" else []
    assert cli([*command, *option, *store]) == 2
    assert needle in one_error_line(capsys)


def test_generated_ids_beyond_the_vocabulary_decode_as_a_replacement_character():
    from workbench.models.tokenizer import UNKNOWN_TEXT, build_char_tokenizer, decode, encode

    tokenizer = build_char_tokenizer()
    ids = encode(tokenizer, "12") + [len(tokenizer), len(tokenizer) + 40] + encode(tokenizer, "3")
    assert decode(tokenizer, ids) == "12" + 2 * UNKNOWN_TEXT + "3"
