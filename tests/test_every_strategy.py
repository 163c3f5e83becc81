"""Every built-in strategy as a user meets it: `workbench run --strategy NAME` on a shipped model, and
`workbench check-plugin NAME`'s decoding invariants (on the checker's scripted fake models: consistency with the
contract, not correctness; each strategy's golden transcript in `tests/reference/` checks that)."""

from __future__ import annotations

import json

import pytest

from workbench.authoring import checker
from workbench.cli import main
from workbench.decoding.catalog import strategy_names

EVERY = strategy_names()


def test_the_catalog_holds_the_baselines():
    """The field's baselines (issue: published decoders as strategies) are all registered."""
    assert {"llada", "dream", "remdm", "wino", "eb", "klass", "pc-sampler", "prophet", "credit", "iter-smooth",
            "hierarchy-remask", "threshold", "hierarchical", "hard", "spd", "uniform-eb"} <= set(EVERY)


@pytest.mark.parametrize("strategy", EVERY)
def test_runs_on_a_shipped_model(strategy, tmp_path, capsys):
    assert main(["run", "--strategy", strategy, "--trainer", "oput", "--limit", "8", "--json", "--quiet",
                 "--store", str(tmp_path / "r.db")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["strategy"] == strategy and result["n"] == 8
    assert result["nfe"] > 0 and result["tokens"] > 0 and 0.0 <= result["accuracy"] <= 1.0


@pytest.mark.parametrize("strategy", EVERY)
def test_check_plugin_invariants_hold(strategy):
    """The strategy on its own (combined with itself where it is one of check-plugin's bases, else with
    threshold, whose hooks it overrides); settings it refuses by design (`UnsupportedSettings`: a cap below its
    schedule, a decode temperature where it samples its own way) are skipped, not failed."""
    base = strategy if strategy in checker.BUILTIN_NAMES else "threshold"
    report = checker.check(checker.load_target(strategy), target=strategy, strategies=[base], examples=3)
    failures = [(c.invariant, c.example, c.error) for c in report.cells if c.status == checker.FAIL]
    assert not failures, failures
    assert any(c.status == checker.PASS for c in report.cells)
