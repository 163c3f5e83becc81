"""Prompt + generation length against the model's maximum (issue 15, item 9): refused before decoding,
naming the sample, instead of an index error deep in the forward or a 40 GB attention allocation."""

from __future__ import annotations

import json

import pytest
import torch

from test_adapters import ARCHITECTURES, save
from workbench.cli import main as cli
from workbench.decoding.limits import DEFAULT_MAX_POSITIONS, LengthError, check_lengths, max_positions


def test_native_model_without_a_table_gets_the_default_limit(tiny_model):
    limit, source = max_positions(tiny_model)
    assert limit == DEFAULT_MAX_POSITIONS and "max_position_embeddings" in source
    check_lengths(tiny_model, [[5] * (limit - 8)], 8)  # exactly full: fine
    with pytest.raises(LengthError, match=r"^sample 1: its prompt has 4089 tokens") as err:
        check_lengths(tiny_model, [[5] * 10, [5] * (limit - 7)], 8)
    assert f"at most {limit - 8} tokens" in str(err.value)
    with pytest.raises(LengthError, match="lower --gen-length"):
        check_lengths(tiny_model, [[5]], limit + 1, names=["the only prompt"])


def test_position_table_of_a_transformers_model_is_the_limit(tmp_path):
    from workbench.models.adapters import load_adapter

    torch.manual_seed(0)
    bert, _ = load_adapter(save(ARCHITECTURES["bert"]().eval(), tmp_path / "bert"))
    roberta, _ = load_adapter(save(ARCHITECTURES["roberta"]().eval(), tmp_path / "roberta"))
    assert max_positions(bert)[0] == 40
    # RoBERTa's positions count from padding_idx + 1 (514 - 2 = 512 for roberta-base, whose pad id is 1)
    assert max_positions(roberta)[0] == 40 - (roberta.model.config.pad_token_id + 1)


def write_jsonl(path, prompts):
    path.write_text("".join(json.dumps({"prompt": p, "answer": "w4"}) + "\n" for p in prompts))
    return f"jsonl:{path}?match=exact"


def test_run_names_the_sample_that_does_not_fit_a_bert(tmp_path, capsys):
    torch.manual_seed(0)
    folder = save(ARCHITECTURES["bert"]().eval(), tmp_path / "bert")
    long = " ".join(f"w{i % 27}" for i in range(30))  # 30 tokens + 16 generated > 40 positions
    task = write_jsonl(tmp_path / "t.jsonl", ["w1 w2", long])
    capsys.readouterr()  # save_pretrained's own progress bar
    assert cli(["run", "--model", str(folder), "--strategy", "threshold", "--task", task, "--gen-length", "16",
                "--block-size", "4", "--store", str(tmp_path / "r.db")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sample 1 (prompt 'w0 w1 w2" in err
    assert "30 tokens" in err and "at most 40" in err and "at most 24 tokens" in err


def test_run_refuses_a_huge_prompt_on_the_native_model_before_decoding(tmp_path, capsys):
    task = write_jsonl(tmp_path / "t.jsonl", ["1+1=", "9" * (DEFAULT_MAX_POSITIONS + 1)])
    assert cli(["run", "--trainer", "oput", "--strategy", "threshold", "--task", task, "--gen-length", "8",
                "--store", str(tmp_path / "r.db")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.count("sample 1 (prompt '9999") == 1
    from workbench.results.store import ResultsStore

    with ResultsStore(tmp_path / "r.db", readonly=True) as store:  # nothing decoded, not even sample 0
        assert all(run.n_samples == 0 for run in store.runs())
