"""`workbench distill`: a model's own decodes of training prompts, filtered by the task's checker, resumable
without losing or repeating a prompt, and recorded by `workbench train --data` in training.json and the card."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from recorder_plugin import RECORDER
from workbench.cli import main as cli
from workbench.tasks import load_task
from workbench.tasks.base import is_held_out



def distill(out: Path, *extra: str) -> int:
    return cli(["distill", "--trainer", "base", "--task", "choice", "--out", str(out), "--quiet", *extra])


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_careful_decodes_are_kept_and_checked_aggressive_ones_filtered(tmp_path, capsys):
    task = load_task("choice")
    out = tmp_path / "careful.jsonl"
    assert distill(out, "--strategy", "threshold", "--tau", "0.95", "--count", "24") == 0
    meta = json.loads((tmp_path / "careful.meta.json").read_text())
    kept = rows(out)
    assert meta["kept"] == len(kept) and meta["decoded"] == 24 and meta["filtered_by_correctness"] is True
    assert meta["model"] == "workbench/default_models/base" or meta["model"].endswith("default_models/base")
    assert meta["strategy"] == "threshold" and meta["params"] == {"tau": 0.95} and meta["task"] == "choice"
    prompts = [r["prompt"] for r in kept + rows(tmp_path / "careful.rejected.jsonl")]
    assert len(set(prompts)) == 24 and not any(is_held_out(p) for p in prompts)

    # One forward per block gets most pairs wrong: the wrong answers go to the rejected file, never to the data.
    fast = tmp_path / "fast.jsonl"
    assert distill(fast, "--strategy", "threshold", "--tau", "0", "--count", "24") == 0
    good, bad = rows(fast), rows(tmp_path / "fast.rejected.jsonl")
    assert bad and len(good) + len(bad) == 24
    by_prompt = {ex.prompt: ex for ex in _first_prompts(task, 200)}
    assert all(task.check(by_prompt[r["prompt"]], r["answer"]) for r in good)
    assert not any(task.check(by_prompt[r["prompt"]], r["answer"]) for r in bad)
    assert f"{len(good)} of 24 decodes kept" in capsys.readouterr().out

    everything = tmp_path / "all.jsonl"
    assert distill(everything, "--strategy", "threshold", "--tau", "0", "--count", "24", "--keep", "all") == 0
    assert len(rows(everything)) == 24 and not (tmp_path / "all.rejected.jsonl").exists()
    assert json.loads((tmp_path / "all.meta.json").read_text())["filtered_by_correctness"] is False


def _first_prompts(task, n):
    import itertools

    return list(itertools.islice(task.train_stream(0), n))


def test_an_interrupted_run_resumes_without_losing_or_repeating_a_prompt(tmp_path, monkeypatch, capsys):
    plugin = tmp_path / "recorder.py"
    plugin.write_text(RECORDER)
    record = tmp_path / "calls"
    monkeypatch.setenv("WB_RECORD", str(record))
    out = tmp_path / "d.jsonl"
    common = ["--strategy", "threshold", "--tau", "0.95", "--keep", "all", "--batch-size", "4", "--plugin",
              str(plugin)]
    assert distill(out, *common, "--count", "8") == 0
    first = out.read_text()
    with open(out, "a") as f:  # a kill in the middle of writing a line
        f.write('{"prompt": "12345678=", "ans')
    record.unlink()
    assert distill(out, *common, "--count", "16") == 0  # a larger count extends the same prompt stream
    assert out.read_text().startswith(first)
    assert sum(int(n) for n in record.read_text().split()) == 8  # only the 8 new prompts were decoded
    data = rows(out)
    assert len(data) == 16 and len({r["prompt"] for r in data}) == 16

    record.unlink()
    assert distill(out, *common, "--count", "16") == 0  # nothing left to do
    assert not record.exists() and len(rows(out)) == 16
    capsys.readouterr()
    fresh = tmp_path / "fresh.jsonl"
    assert distill(fresh, *common, "--count", "16") == 0
    assert rows(fresh) == data  # the resumed file holds what one uninterrupted run writes


def test_other_settings_on_the_same_file_are_refused(tmp_path, capsys):
    out = tmp_path / "d.jsonl"
    assert distill(out, "--tau", "0.95", "--count", "4") == 0
    capsys.readouterr()
    assert distill(out, "--tau", "0.5", "--count", "4") == 2
    err = capsys.readouterr().err
    assert "another params" in err and len(err.strip().splitlines()) == 1
    foreign = tmp_path / "mine.jsonl"
    foreign.write_text('{"prompt": "a", "answer": "b"}\n')
    assert distill(foreign, "--count", "4") == 2
    assert "not data" in capsys.readouterr().err


def test_train_on_distilled_data_records_it_in_training_json_and_card(tmp_path, capsys):
    data = tmp_path / "data.jsonl"
    assert distill(data, "--count", "32") == 0
    out = tmp_path / "model"
    assert cli(["train", "--trainer", "oput", "--preset", "micro", "--steps", "4", "--eval-limit", "0",
                "--data", str(data), "--out", str(out), "--quiet"]) == 0
    record = json.loads((out / "training.json").read_text())["data"]
    assert record["path"] == str(data)
    assert record["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert record["meta"] == json.loads((tmp_path / "data.meta.json").read_text())
    card = (out / "README.md").read_text()
    assert record["sha256"][:16] in card and "self-distilled, 32 of 32 decodes" in card
    assert "kept if the task checks them correct" in card


@pytest.mark.parametrize("args, needle", [(["--count", "0"], "--count"), (["--tau", "2"], "must be a number in [0, 1], got 2")])
def test_bad_input_exits_2(tmp_path, capsys, args, needle):
    assert distill(tmp_path / "d.jsonl", *args) == 2
    assert needle in capsys.readouterr().err
