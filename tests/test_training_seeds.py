"""`workbench ablate --model-dir DIR` over training-seed folders DIR/<trainer>/seed<K>/: one command decodes every
seed's model, and every cell of the grid is the mean ± std over the training seeds of what each model gives alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from workbench.cli import main as cli
from workbench.results.grid import split_trainer
from workbench.models.native import build_random_model
from workbench.models.tokenizer import build_char_tokenizer

LIMIT = 6


def save_model(folder: Path, seed: int) -> None:
    tokenizer = build_char_tokenizer()
    model = build_random_model(len(tokenizer), seed=seed, hidden_size=32, num_layers=2, num_heads=2, block_size=8)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("seeded")
    save_model(root / "base", seed=0)  # a plain model folder beside seed folders
    for k in (2, 3, 4):
        save_model(root / "oput" / f"seed{k}", seed=10 + k)
    (root / "oput" / "seed9").mkdir()  # no model inside: not a training seed
    return root


def ablate(model_dir, store, capsys, *extra):
    args = ["ablate", "--model-dir", str(model_dir), "--strategies", "threshold", "--trainers", "base,oput",
            "--tau", "0", "--limit", str(LIMIT), "--gen-length", "16", "--store", str(store), *extra]
    assert cli(args) == 0
    return capsys.readouterr().out


def test_split_trainer_reads_the_training_seed():
    assert split_trainer("oput/seed3") == ("oput", 3)
    assert split_trainer("oput") == ("oput", None)
    assert split_trainer("my/seed") == ("my/seed", None)


def test_one_row_per_trainer_with_mean_and_std_over_training_seeds(model_dir, tmp_path, capsys):
    store = tmp_path / "grid.db"
    report = json.loads(ablate(model_dir, store, capsys, "--json"))
    rows = {c["trainer"]: c for c in report["cells"]}
    assert set(rows) == {"base", "oput"}
    assert rows["base"]["training_seeds"] == [] and rows["base"]["n"] == LIMIT
    oput = rows["oput"]
    assert oput["training_seeds"] == [2, 3, 4] and oput["n"] == 3 * LIMIT

    # Each seed's model decoded alone gives the numbers the grid aggregates.
    alone = []
    for k in (2, 3, 4):
        assert cli(["run", "--model", str(model_dir / "oput" / f"seed{k}"), "--strategy", "threshold", "--tau", "0",
                    "--limit", str(LIMIT), "--gen-length", "16", "--store", str(tmp_path / "alone.db"),
                    "--json"]) == 0
        alone.append(json.loads(capsys.readouterr().out))
    for key in ("tpf", "tpf_total"):
        values = [r[key] for r in alone]
        assert oput[key] == pytest.approx(np.mean(values))
        assert oput[f"{key}_std"] == pytest.approx(np.std(values, ddof=1))
    assert oput["accuracy"] == pytest.approx(100 * np.mean([r["accuracy"] for r in alone]))

    table = ablate(model_dir, store, capsys, "--format", "markdown")  # reused from the store, nothing decoded
    assert "train seeds" in table and "2,3,4" in table and "TPF_total" in table

    # The pivot (lab/README.md's grids): one column per trainer, the seed spread in the oput cell only.
    pivot = cli_out(capsys, "report", "--store", str(store), "--format", "pivot").splitlines()
    head = [c.strip() for c in pivot[0].strip("|").split("|")]
    cells = dict(zip(head, (c.strip() for c in pivot[2].strip("|").split("|"))))
    assert head[:3] == ["strategy", "params", "tau"] and len(head) == 5
    base_cell, oput_cell = cells["base: acc % / TPF / TPF_total"], cells["oput: acc % / TPF / TPF_total"]
    assert "±" not in base_cell and oput_cell.count("±") == 3
    assert oput_cell.startswith(f"{oput['accuracy']:.1f} ± {oput['accuracy_std']:.1f} / {oput['tpf']:.2f} ± ")


def cli_out(capsys, *args) -> str:
    assert cli(list(args)) == 0
    return capsys.readouterr().out


def test_a_trainer_folder_without_models_is_refused(tmp_path, capsys):
    (tmp_path / "oput" / "notes").mkdir(parents=True)
    assert cli(["ablate", "--model-dir", str(tmp_path), "--trainers", "oput", "--strategies", "threshold",
                "--tau", "0.9", "--store", str(tmp_path / "s.db")]) == 2
    assert "seed<K>" in capsys.readouterr().err
