"""The leaderboard (issue 19): `workbench ablate --strategies all` runs every installed strategy over its own
grid, skips a strategy that cannot decode the models with the reason, and `report` ranks methods by AUP beside
each method's fastest point within AUP's 5-point drop."""

from __future__ import annotations

import json

import pytest

from test_ablate import make_model_dir
from workbench.cli import main as cli
from workbench.commands import ablate
from workbench.decoding.registry import (
    DEFAULT_TAU_GRID, StrategyParamError, strategy_names, strategy_tau_grid, strategy_threshold_param,
)
from workbench.results.report import fastest_kept


def test_all_is_every_installed_strategy_with_a_main_threshold():
    names = ablate.leaderboard_strategies()
    for name in strategy_names():
        try:
            strategy_threshold_param(name)
        except StrategyParamError:
            assert name not in names
        else:
            assert name in names
    assert {"threshold", "hierarchical", "hard", "spd", "remdm", "dream", "eb", "wino", "klass"} <= set(names)


def test_each_strategy_sweeps_its_own_grid():
    assert strategy_tau_grid("threshold") == DEFAULT_TAU_GRID  # the mission's four keep 0.95, 0.5, 0
    assert strategy_tau_grid("eb") == (0.001, 0.01, 0.1, 1.0)  # an entropy budget, not a probability


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("models"), trainers=("oput",))


def test_the_default_grid_is_each_strategys_own_and_a_given_tau_applies_to_all(model_dir, tmp_path, capsys):
    common = ["ablate", "--strategies", "eb,threshold", "--trainers", "oput", "--model-dir", str(model_dir),
              "--limit", "2", "--json", "--quiet"]
    assert cli([*common, "--store", str(tmp_path / "a.db")]) == 0
    cells = json.loads(capsys.readouterr().out)["cells"]
    taus = {s: sorted(c["tau"] for c in cells if c["strategy"] == s) for s in ("eb", "threshold")}
    assert taus == {"eb": sorted(strategy_tau_grid("eb")), "threshold": sorted(DEFAULT_TAU_GRID)}
    assert cli([*common, "--tau", "0.5", "--store", str(tmp_path / "b.db")]) == 0
    assert {c["tau"] for c in json.loads(capsys.readouterr().out)["cells"]} == {0.5}


def test_all_skips_a_strategy_that_refuses_the_models_and_says_why(model_dir, tmp_path, capsys, monkeypatch):
    """Dream samples with its own temperature and refuses a decode temperature; threshold takes it."""
    monkeypatch.setattr(ablate, "leaderboard_strategies", lambda: ["threshold", "dream"])
    assert cli(["ablate", "--strategies", "all", "--trainers", "oput", "--model-dir", str(model_dir), "--tau", "0.9",
                "--temperature", "0.5", "--limit", "2", "--json", "--quiet", "--store", str(tmp_path / "r.db")]) == 0
    out = capsys.readouterr()
    report = json.loads(out.out)
    assert {c["strategy"] for c in report["cells"]} == {"threshold"}
    assert [s["strategy"] for s in report["skipped"]] == ["dream"]
    assert "skipped dream on oput: dream samples with its own temperature" in out.err


def test_a_named_strategy_that_refuses_is_still_an_error(model_dir, tmp_path, capsys):
    assert cli(["ablate", "--strategies", "dream", "--trainers", "oput", "--model-dir", str(model_dir),
                "--tau", "0.9", "--temperature", "0.5", "--limit", "2", "--quiet",
                "--store", str(tmp_path / "r.db")]) == 2
    assert "dream samples with its own temperature" in capsys.readouterr().err


def test_the_fastest_kept_point_is_the_most_parallel_within_five_points():
    rows = [{"tau": 0.95, "accuracy": 99.0, "tpf": 1.0, "tpf_total": 0.9},
            {"tau": 0.5, "accuracy": 95.0, "tpf": 2.0, "tpf_total": 1.7},   # 4 points lower: kept
            {"tau": 0.0, "accuracy": 90.0, "tpf": 4.0, "tpf_total": 3.0}]   # 9 points lower: dropped
    assert fastest_kept(rows) == {"tau": 0.5, "accuracy": 95.0, "tpf": 2.0, "tpf_total": 1.7}
