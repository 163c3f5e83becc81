"""An installed entry-point plugin that fails to import (issue 15, item 10): skipped with a warning naming its
distribution everywhere but where it is the strategy asked for, which fails in one line naming it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_report import write_store
from workbench.cli import main as cli
from workbench.decoding.registry import PluginSkippedWarning, available_strategies

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def broken_distribution(tmp_path, monkeypatch) -> Path:
    """A distribution `broken-wb-plugin 1.0` on sys.path whose strategy module imports a missing package."""
    site = tmp_path / "site"
    info = site / "broken_wb_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-wb-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[workbench]\nbroken = broken_wb_plugin\n")
    (site / "broken_wb_plugin.py").write_text("import nosuch_dependency_of_the_plugin\n")
    monkeypatch.syspath_prepend(str(site))
    return site


def test_listing_skips_it_with_a_warning_naming_the_distribution(broken_distribution):
    with pytest.warns(PluginSkippedWarning, match=r"broken-wb-plugin 1\.0.*ModuleNotFoundError") as caught:
        names = [s.name for s in available_strategies()]
    assert "broken" not in names and {"threshold", "hierarchical", "hard", "spd"} <= set(names)
    assert "pip uninstall broken-wb-plugin" in str(caught[0].message)


def test_asking_for_it_is_one_line_naming_the_distribution(broken_distribution, tmp_path, capsys):
    assert cli(["run", "--strategy", "broken", "--store", str(tmp_path / "r.db")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "broken-wb-plugin 1.0" in err and "nosuch_dependency_of_the_plugin" in err


def test_report_and_list_still_work(broken_distribution, tmp_path, capsys):
    from workbench.results.grid import _main_threshold

    store = write_store(tmp_path / "grid.db")
    _main_threshold.cache_clear()  # an earlier test may have looked the strategies up already
    with pytest.warns(PluginSkippedWarning):
        assert cli(["report", "--store", str(store), "--format", "json"]) == 0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(broken_distribution), str(REPO)])}
    done = subprocess.run([sys.executable, "-m", "workbench", "list"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0 and "threshold" in done.stdout
    warning = [line for line in done.stderr.splitlines() if "broken-wb-plugin" in line]
    assert len(warning) == 1 and warning[0].startswith("workbench: warning: skipping strategy 'broken'")
