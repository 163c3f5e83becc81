"""Checkpoint identity and completeness (issue 14, items 10-11): `checkpoint_hash` covers every file that can
change outputs, and a checkpoint with a missing weight tensor is refused by `run` and `train --init`.

Real models: the native model and transformers' BertForMaskedLM, tiny and random, saved here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from workbench.cli import main as cli
from workbench.models.adapters import load_adapter
from workbench.models.folders import WeightMismatchError
from workbench.models.loading import load_model
from workbench.models.native import build_random_model
from workbench.models.tokenizer import build_char_tokenizer
from workbench.results.store import checkpoint_hash, hashed_files

SHIPPED = "workbench/default_models/oput"


def native_folder(path, seed=0):
    build_random_model(len(build_char_tokenizer()), seed=seed, hidden_size=32, num_layers=1, num_heads=2,
                       block_size=8).save_pretrained(path)
    build_char_tokenizer().save_pretrained(path)
    return path


# -- 10 --------------------------------------------------------------------------------------------------
def test_two_models_saved_as_pytorch_model_bin_hash_differently(tmp_path):
    folders = []
    for seed in (0, 1):
        folder = native_folder(tmp_path / f"m{seed}", seed)
        weights = load_file(folder / "model.safetensors")
        (folder / "model.safetensors").unlink()
        torch.save(weights, folder / "pytorch_model.bin")  # the older transformers format
        folders.append(folder)
    assert checkpoint_hash(folders[0]) != checkpoint_hash(folders[1])


@pytest.mark.parametrize("name", ["modeling_llada.py", "merges.txt", "vocab.txt", "weights.pt", "tokenizer.model",
                                  "model.gguf", "chat_template.jinja", "sub/extra.safetensors"])
def test_every_file_that_can_change_outputs_is_hashed(tmp_path, name):
    folder = shutil.copytree(SHIPPED, tmp_path / "m")
    before = checkpoint_hash(folder)
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("v1")
    with_file = checkpoint_hash(folder)
    (folder / name).write_text("v2")
    assert len({before, with_file, checkpoint_hash(folder)}) == 3


@pytest.mark.parametrize("name", ["README.md", "LICENSE", "figure.png", ".cache/huggingface/download.lock",
                                  "__pycache__/modeling.cpython-311.pyc", "checkpoint.pt", ".gitattributes"])
def test_documentation_and_caches_are_not_hashed(tmp_path, name):
    folder = shutil.copytree(SHIPPED, tmp_path / "m")
    before = checkpoint_hash(folder)
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("anything")
    assert checkpoint_hash(folder) == before


def test_the_shipped_models_keep_their_hash():
    # The deny-list hashes exactly the files the old *.safetensors/*.json rule did for these folders, so their
    # hashes (the keys of stored results and of distillation metadata) did not change with the rule.
    for folder in sorted(p for p in Path(SHIPPED).parent.iterdir() if p.is_dir()):
        old_rule = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".json"))
        assert hashed_files(folder) == old_rule, folder


# -- 11 --------------------------------------------------------------------------------------------------
def drop_tensor(folder, name):
    path = folder / "model.safetensors"
    tensors = load_file(path)
    assert name in tensors
    del tensors[name]
    save_file(tensors, path, metadata={"format": "pt"})


def test_a_native_checkpoint_with_a_missing_tensor_is_refused_naming_it(tmp_path, capsys):
    folder = native_folder(tmp_path / "m")
    drop_tensor(folder, "layers.0.mlp.down.weight")
    with pytest.raises(WeightMismatchError, match=r"missing layers\.0\.mlp\.down\.weight"):
        load_model(folder)
    capsys.readouterr()
    assert cli(["run", "--model", str(folder), "--task", "sum", "--limit", "2", "--store",
                str(tmp_path / "r.db")]) == 2
    err = capsys.readouterr().err
    assert "layers.0.mlp.down.weight" in err and len(err.strip().splitlines()) == 1
    assert cli(["train", "--init", str(folder), "--preset", "micro", "--steps", "1", "--eval-limit", "0",
                "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "layers.0.mlp.down.weight" in capsys.readouterr().err
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_a_bert_checkpoint_with_a_missing_tensor_is_refused(tmp_path):
    from test_adapters import SMALL, save

    torch.manual_seed(0)
    folder = save(transformers.BertForMaskedLM(transformers.BertConfig(**SMALL)).eval(), tmp_path / "bert")
    load_adapter(folder)  # complete: loads
    drop_tensor(folder, "bert.encoder.layer.0.attention.self.query.weight")
    with pytest.raises(WeightMismatchError, match=r"attention\.self\.query\.weight"):
        load_adapter(folder)
