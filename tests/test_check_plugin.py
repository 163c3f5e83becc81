"""`workbench check-plugin` and `workbench.authoring.checker`: broken plugins are caught and named, good ones pass."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from workbench.authoring import checker
from workbench.cli import main
from workbench.decoding.registry import hookimpl

HEADER = "import torch\nfrom workbench.decoding.registry import hookimpl\n\n"
BROKEN = {
    # promotes positions that are already tokens (never an open mask at the first step, so only a
    # strategy that runs a second step exposes it; all four do on some problem)
    "contract": """
        class PromotesTokens:
            @hookimpl
            def promote(self, state):
                return ~state.is_mask & state.active
        """,
    # the core's fallback keeps progress, but the block only ends at the forward cap
    "oracle": """
        class NeverConverges:
            @hookimpl
            def converge(self, state):
                return torch.zeros(state.batch_size, dtype=torch.bool)
        """,
    # the rule depends on the batch it is decoded with
    "batch invariance": """
        class BatchDependent:
            @hookimpl
            def promote(self, state):
                return state.open_masks & (state.conf >= (0.0 if state.batch_size > 1 else 1.0))
        """,
}


def write_plugin(tmp_path, name, body):
    path = tmp_path / f"{name}.py"
    path.write_text(HEADER + textwrap.dedent(body))
    return path


@pytest.mark.parametrize("invariant", sorted(BROKEN))
def test_cli_exits_1_and_names_the_broken_invariant(tmp_path, capsys, invariant):
    path = write_plugin(tmp_path, "broken", BROKEN[invariant])
    assert main(["check-plugin", str(path), "--examples", "6", "--strategies", "threshold,spd", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    failing = {c["invariant"] for c in report["cells"] if c["status"] == "FAIL"}
    assert invariant in failing
    cell = next(c for c in report["cells"] if c["status"] == "FAIL" and c["invariant"] == invariant)
    assert cell["example"] and "prompts = " in cell["example"] and "DecodeConfig(" in cell["example"]
    assert cell["error"]


def test_contract_failure_text_names_plugin_hook_and_rule_and_blocks_the_rest(tmp_path, capsys):
    path = write_plugin(tmp_path, "broken", BROKEN["contract"])
    assert main(["check-plugin", str(path), "--examples", "6", "--strategies", "spd"]) == 1
    out = capsys.readouterr().out
    assert "FAIL contract x spd" in " ".join(out.split())
    assert "broke the 'promote' contract (promote only active open positions)" in " ".join(out.split())
    assert "broken.PromotesTokens" in out and "minimal failing example" in out and "blocked" in out


def test_minimal_example_is_shrunk():
    class NeverConverges:
        @hookimpl
        def converge(self, state):
            return torch.zeros(state.batch_size, dtype=torch.bool)

    report = checker.check([NeverConverges()], strategies=["threshold"], examples=10)
    cell = report.cell("oracle", "threshold")
    assert cell.status == checker.FAIL
    assert "block_size=1, max_new_tokens=1" in cell.example and "in [1]]" in cell.example  # smallest problem
    assert "does converge ever say True?" in cell.error


def test_a_crashing_plugin_is_reported_with_where_it_raised():
    class Crashes:
        @hookimpl
        def promote(self, state):
            return state.conf[:, :, None].argmax(-2)[99]

    report = checker.check([Crashes()], strategies=["threshold"], examples=3)
    cell = report.cell("contract", "threshold")
    assert cell.status == checker.FAIL and "IndexError" in cell.error
    assert "plugin 'Crashes' raised IndexError in hook 'promote' at test_check_plugin.py:" in cell.error


def test_good_plugin_passes_and_exits_0(tmp_path, capsys):
    path = write_plugin(tmp_path, "leftmost", """
        from plugins.promotion import leftmost

        class Leftmost:
            claims = ("contiguity",)

            @hookimpl
            def promote(self, state):
                return leftmost(state)
        """)
    assert main(["check-plugin", str(path), "--examples", "4"]) == 0
    out = capsys.readouterr().out
    assert "all invariants hold" in out and "FAIL" not in out


def test_applicability_of_claimable_invariants():
    class Promote:
        @hookimpl
        def promote(self, state):
            return None

    class PromoteContiguous(Promote):
        claims = ("contiguity",)

    class Commit:
        @hookimpl
        def commit(self, state):
            return None

    def ok(inv, strategy, plugin):
        return checker.applies(inv, strategy, [("p", plugin)])[0]

    assert ok("contiguity", "spd", Commit()) and not ok("contiguity", "threshold", Commit())
    assert not ok("contiguity", "spd", Promote()) and ok("contiguity", "threshold", PromoteContiguous())
    assert ok("monotonicity", "threshold", Promote()) and not ok("monotonicity", "threshold", Commit())
    assert ok("progress", "spd", Commit())


def test_unknown_claim_is_a_load_error(tmp_path, capsys):
    path = write_plugin(tmp_path, "claims", """
        class Claims:
            claims = ("contiguous",)

            @hookimpl
            def promote(self, state):
                return None
        """)
    assert main(["check-plugin", str(path), "--strategies", "spd"]) == 2
    assert "claimable: contiguity, monotonicity" in capsys.readouterr().err


def test_builtin_strategy_by_name_and_bad_inputs(capsys):
    assert main(["check-plugin", "threshold", "--strategies", "hierarchical", "--examples", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["providers"]["hierarchical"]["promote"] == "threshold"
    assert main(["check-plugin", "no-such-strategy"]) == 2
    assert main(["check-plugin", "missing.py"]) == 2
    assert main(["check-plugin", "threshold", "--examples", "0"]) == 2
    err = capsys.readouterr().err
    assert "unknown strategy 'no-such-strategy'" in err and "does not exist" in err


def test_hand_state():
    state = checker.hand_state(probs=[[[0.0, 0.2, 0.8], [0.0, 0.6, 0.4]]], is_mask=[[True, False]])
    assert state.conf[0].tolist() == pytest.approx([0.8, 0.6]) and state.top.tolist() == [[2, 1]]
    assert state.open_masks.tolist() == [[True, False]] and state.ids.tolist() == [[1, 1]]
    assert state.vocab_size == 3 and state.probs.shape == (1, 2, 3)


def test_console_entry_exit_code(tmp_path):
    """The real command line, once: exit status 1 and the invariant's name on stdout."""
    import subprocess
    import sys

    path = write_plugin(tmp_path, "broken", BROKEN["contract"])
    done = subprocess.run([sys.executable, "-m", "workbench", "check-plugin", str(path), "--examples", "3",
                           "--strategies", "spd"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "FAIL contract x spd" in " ".join(done.stdout.split())


def test_a_hook_without_hookimpl_is_warned_about(tmp_path, capsys):
    path = write_plugin(tmp_path, "half", """
        class Half:
            @hookimpl
            def promote(self, state):
                return state.open_masks

            def converge(self, state):  # forgot @hookimpl: pluggy would ignore it silently
                return state.done | True
        """)
    assert main(["check-plugin", str(path), "--examples", "2", "--strategies", "threshold"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Half defines converge() without @hookimpl" in out


def test_misspelt_hook_unmarked_class_and_directory_say_what_is_wrong(tmp_path):
    from workbench.decoding.registry import PluginLoadError, load_plugin_file

    typo = write_plugin(tmp_path, "typo", """
        class Typo:
            @hookimpl
            def promot(self, state):
                return state.open_masks
        """)
    with pytest.raises(PluginLoadError, match=r"Typo.promot is marked @hookimpl but no hook is called 'promot'; "
                                              r"did you mean 'promote'\?"):
        load_plugin_file(typo)
    bare = write_plugin(tmp_path, "bare", """
        class Bare:
            def promote(self, state):
                return state.open_masks
        """)
    with pytest.raises(PluginLoadError, match=r"Bare.promote look like hooks but lack @hookimpl"):
        load_plugin_file(bare)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "pkg.py").write_text("")
    with pytest.raises(PluginLoadError, match=r"is a directory: give the plugin's .py file \(the package's plugin "
                                              r"is .*pkg.py'\)"):
        load_plugin_file(tmp_path / "pkg")


# -- settings a plugin refuses (UnsupportedSettings) ------------------------------------------------------------


class NeedsThreeForwards:
    """A fixed-schedule sampler in miniature: refuses a forward cap below 3, else promotes the leftmost mask."""

    @hookimpl
    def promote(self, state):
        from plugins.promotion import leftmost
        from workbench import UnsupportedSettings

        if state.cap < 3:
            raise UnsupportedSettings(f"needs 3 forwards per block, the cap is {state.cap}: pass --max-forwards 3")
        return leftmost(state)


def test_a_refused_setting_is_skipped_not_failed():
    """Problems whose cap the plugin refuses are drawn again; the rest are checked (and would fail if broken)."""
    report = checker.check([NeedsThreeForwards()], strategies=["threshold"], examples=6)
    assert report.ok, [(c.invariant, c.error) for c in report.cells if c.status == checker.FAIL]
    assert report.cell("contract", "threshold").status == checker.PASS


def test_a_plugin_refusing_every_problem_is_not_applicable_with_its_reason():
    class RefusesAll:
        @hookimpl
        def promote(self, state):
            from workbench import UnsupportedSettings

            raise UnsupportedSettings("runs only on a GPU")

    cell = checker.check([RefusesAll()], strategies=["threshold"], examples=3).cell("contract", "threshold")
    assert cell.status == checker.NA and "runs only on a GPU" in cell.note


def test_a_plain_value_error_is_still_a_failure():
    class Raises:
        @hookimpl
        def promote(self, state):
            raise ValueError("a bug, not a refusal")

    cell = checker.check([Raises()], strategies=["threshold"], examples=3).cell("contract", "threshold")
    assert cell.status == checker.FAIL and "a bug, not a refusal" in cell.error


def test_run_prints_a_third_party_refusal_as_one_usage_line(tmp_path, capsys):
    path = write_plugin(tmp_path, "needs_three", """
        from plugins.promotion import leftmost
        from workbench import UnsupportedSettings

        class NeedsThree:
            @hookimpl
            def promote(self, state):
                if state.cap < 3:
                    raise UnsupportedSettings(f"the cap is {state.cap}: pass --max-forwards 3")
                return leftmost(state)
        """)
    code = main(["run", "--strategy", "threshold", "--trainer", "oput", "--plugin", str(path), "--limit", "2",
                 "--max-forwards", "2", "--store", str(tmp_path / "r.db")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "the cap is 2: pass --max-forwards 3" in err.strip().splitlines()[-1]
