"""`workbench train` and the folders it reads and writes (issue 15, items 2 and 3, and 17's train errors):
the checkpoint is loaded without unpickling code, a folder that is not this run's is never overwritten
unless asked, a bad --init is one line, and Ctrl-C speaks of checkpoints."""

from __future__ import annotations

import hashlib
import pathlib

import pytest
import torch

from test_adapters import ARCHITECTURES, save
from workbench.cli import main as cli
from workbench.training.train import CHECKPOINT, PRESETS, TrainConfig, TrainOutputError, read_checkpoint, train

MICRO = ["--trainer", "mdlm", "--preset", "micro", "--steps", "2", "--eval-limit", "0", "--quiet"]


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def digest(folder: pathlib.Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_the_real_checkpoint_loads_with_weights_only(tmp_path):
    cfg = TrainConfig(trainer="oput", **{**PRESETS["micro"], "steps": 4, "eval_limit": 0})
    train(cfg, tmp_path / "m", progress=False, stop_after=2)
    state = torch.load(tmp_path / "m" / CHECKPOINT, weights_only=True)  # tensors and plain data only
    assert state["step"] == 2 and state["generator"].dtype == torch.uint8 and state["config"]["trainer"] == "oput"
    assert read_checkpoint(tmp_path / "m" / CHECKPOINT)["optimizer"]["state"]


class Payload:
    """Unpickling this calls Path.touch: what a checkpoint from someone else could do with any function."""

    def __init__(self, target: pathlib.Path):
        self.target = target

    def __reduce__(self):
        return pathlib.Path.touch, (self.target,)


def test_a_checkpoint_that_carries_code_is_refused_and_the_code_never_runs(tmp_path, capsys):
    out, ran = tmp_path / "shared-model", tmp_path / "code-ran"
    out.mkdir()
    torch.save({"model": {}, "step": 1, "payload": Payload(ran)}, out / CHECKPOINT)
    assert cli(["train", *MICRO, "--out", str(out)]) == 2
    err = error_line(capsys)
    assert str(out / CHECKPOINT) in err and "not loaded" in err
    assert not ran.exists()


def test_a_folder_that_is_not_this_run_is_not_overwritten(tmp_path, capsys):
    mine = tmp_path / "my-project"
    mine.mkdir()
    (mine / "README.md").write_text("# my notes\n")
    (mine / "config.json").write_text('{"mine": true}\n')
    before = digest(mine)
    assert cli(["train", *MICRO, "--out", str(mine)]) == 2
    err = error_line(capsys)
    assert "is not empty" in err and "README.md" in err and "--overwrite" in err
    assert digest(mine) == before
    assert cli(["train", *MICRO, "--out", str(mine), "--overwrite"]) == 0
    assert (mine / "model.safetensors").is_file() and (mine / "README.md").read_text() != "# my notes\n"


def test_rerunning_the_same_command_resumes_and_another_configuration_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(["train", *MICRO, "--out", str(out), "--stop-after", "1"]) == 0
    assert cli(["train", *MICRO, "--out", str(out)]) == 0  # same configuration: resumes, no --overwrite needed
    capsys.readouterr()
    assert cli(["train", *MICRO, "--lr", "0.05", "--out", str(out)]) == 2
    err = error_line(capsys)
    assert "another configuration (lr differ)" in err and "--overwrite" in err
    assert cli(["train", *MICRO, "--lr", "0.05", "--out", str(out), "--overwrite"]) == 0
    assert read_checkpoint(out / CHECKPOINT)["config"]["lr"] == 0.05


def test_out_that_is_a_file_is_one_line(tmp_path, capsys):
    target = tmp_path / "model.txt"
    target.write_text("not a folder")
    assert cli(["train", *MICRO, "--out", str(target)]) == 2
    assert "is a file" in error_line(capsys)


@pytest.mark.parametrize("make, needle", [
    (lambda p: p, "holds no config.json"),
    (lambda p: (p / "weights.bin").write_text("x") and p / "weights.bin", "is a file"),
    (lambda p: save(ARCHITECTURES["bert"](), p / "bert"), "is a bert checkpoint"),
    (lambda p: p / "nosuch", "does not exist"),
])
def test_a_bad_init_folder_is_one_line_and_writes_nothing(make, needle, tmp_path, capsys):
    init = make(tmp_path)
    capsys.readouterr()
    assert cli(["train", *MICRO, "--init", str(init), "--out", str(tmp_path / "out")]) == 2
    assert needle in error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_a_native_folder_without_its_tokenizer_names_the_folder(tmp_path, capsys):
    cfg = TrainConfig(trainer="mdlm", **{**PRESETS["micro"], "steps": 1, "eval_limit": 0})
    init = train(cfg, tmp_path / "init", progress=False)
    (init / "tokenizer.json").unlink()
    assert cli(["train", *MICRO, "--init", str(init), "--out", str(tmp_path / "out")]) == 2
    err = error_line(capsys)
    assert f"{init} holds no tokenizer.json" in err


def test_ctrl_c_during_training_speaks_of_the_checkpoint(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("workbench.training.train.train", interrupted)
    assert cli(["train", *MICRO, "--out", str(tmp_path / "out")]) == 130
    err = capsys.readouterr().err
    assert "checkpoint" in err and "samples" not in err


def test_train_api_refuses_a_checkpoint_of_another_configuration(tmp_path):
    cfg = TrainConfig(trainer="mdlm", **{**PRESETS["micro"], "steps": 4, "eval_limit": 0})
    train(cfg, tmp_path / "m", progress=False, stop_after=2)
    with pytest.raises(TrainOutputError, match="another configuration"):
        train(TrainConfig(trainer="uniform", **{**PRESETS["micro"], "steps": 4, "eval_limit": 0}), tmp_path / "m",
              progress=False)
