"""The package layout: no import circles anywhere, packages import only downward, one public plugin API,
and a start-up that answers `--help` and usage errors without torch or transformers."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import warnings
from collections import defaultdict
from pathlib import Path

import pytest

import workbench

ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("workbench", "strategies", "plugins", "trainers")
SOURCES = ("workbench/**/*.py", "strategies/*.py", "plugins/*.py", "trainers/*.py", "tests/**/*.py",
           "benchmarks/**/*.py", "examples/**/*.py")


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at any depth (a function's lazy import is an import too), except under
    `if TYPE_CHECKING:`, which never runs."""
    tree = ast.parse(path.read_text())
    for guard in [n for n in ast.walk(tree) if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)]:
        guard.body = []
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # `from pkg import module`
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for pattern in SOURCES for p in ROOT.glob(pattern)}
    return {name: {m for m in imports_of(path) if m in files and m != name} for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circles_anywhere_in_the_project():
    assert cycles(import_graph()) == []


def test_the_circle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def concern(module: str) -> str:
    """`workbench.decoding.loop` -> `workbench.decoding`; `strategies.spd` -> `strategies`."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "workbench" and len(parts) > 1 else parts[0]


# What each concern may import besides itself (its package docstring says the same). `workbench` alone is the
# package root: the public API and `__version__`.
BELOW = {
    "workbench.models": set(),
    "workbench.tasks": set(),
    "workbench.runtime": set(),
    "workbench.decoding": {"workbench", "workbench.models"},
    "plugins": {"workbench", "workbench.decoding"},
    "strategies": {"workbench", "plugins"},
    "trainers": {"workbench", "plugins", "workbench.models"},
    "workbench.authoring": {"workbench", "workbench.decoding", "workbench.models"},
    "workbench.results": {"workbench", "workbench.decoding", "workbench.models", "workbench.tasks",
                          "workbench.runtime"},
    "workbench.training": {"workbench", "trainers", "workbench.results", "workbench.decoding", "workbench.models",
                           "workbench.tasks", "workbench.runtime"},
}


def test_each_package_imports_only_what_lies_below_it():
    wrong = []
    for module, targets in import_graph().items():
        own = concern(module)
        if own not in BELOW:
            continue  # the command line, the lm-eval harness, tests, benchmarks: the top
        for target in targets:
            other = concern(target)
            if other != own and other not in BELOW[own]:
                wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_every_workbench_package_says_what_it_owns_and_may_import():
    for init in (ROOT / "workbench").glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        if init.parent.name in ("harness", "commands", "tasks"):
            assert doc, init
            continue
        assert "May import" in doc, f"{init}: the docstring says what the package may import"


# -- the public API ------------------------------------------------------------------------------------------


def test_every_public_name_resolves():
    for name in workbench.__all__:
        assert getattr(workbench, name) is not None, name


def test_docs_api_lists_exactly_the_public_names():
    text = (ROOT / "docs" / "api.md").read_text()
    listed = set(re.findall(r"^\| `([A-Za-z_]+)`", text, flags=re.M))
    assert listed == set(workbench.__all__) - {"__version__"}


def test_an_unknown_name_says_where_the_api_is_listed():
    with pytest.raises(AttributeError, match="docs/api.md"):
        workbench.no_such_name  # noqa: B018


PUBLIC_ONLY = ["strategies/*.py", "examples/plugins/*.py"]


@pytest.mark.parametrize("pattern", PUBLIC_ONLY)
def test_strategies_and_examples_import_only_the_public_api(pattern):
    modules = set(import_graph())
    for path in ROOT.glob(pattern):
        private = sorted(m for m in imports_of(path) if m.startswith("workbench.") and m in modules)
        assert private == [], f"{path.relative_to(ROOT)} imports {private}; use `from workbench import ...`"


def test_the_tutorial_and_the_readme_import_only_the_public_api():
    """Plugin code in the docs imports from `workbench` alone (docs/lm_eval.md's lines import the harness,
    which is not plugin code)."""
    for path in (ROOT / "README.md", ROOT / "lab" / "README.md", *sorted((ROOT / "docs").glob("*.md"))):
        doc = path.relative_to(ROOT).as_posix()
        text = path.read_text()
        assert not re.findall(r"^\s*from workbench\.(decoding|results|training|runtime|authoring|models)\b", text,
                              flags=re.M), doc


def test_a_scaffolded_plugin_and_its_test_import_only_the_public_api():
    from workbench.authoring.scaffold import render_plugin, render_test

    hooks = ("embed_state", "promote", "converge", "commit", "on_step_end", "fill_block", "revoke")
    for text in (render_plugin("myidea", hooks), render_test("myidea", hooks)):
        assert not re.findall(r"^from workbench\.\w+", text, flags=re.M)
        assert re.findall(r"^from workbench import ", text, flags=re.M)


def test_the_old_module_paths_still_work_for_one_release_and_warn():
    from workbench.decoding import registry

    sys.modules.pop("workbench.registry", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import workbench.registry as old
    assert old is registry
    assert any(issubclass(w.category, DeprecationWarning) and "workbench.decoding.registry" in str(w.message)
               for w in caught)


# -- start-up -------------------------------------------------------------------------------------------------

HEAVY = ("torch", "transformers")


def modules_after(argv: list[str]) -> tuple[int, list[str], str]:
    """(exit code, heavy modules imported, stderr) of the CLI run with `argv` in a fresh interpreter."""
    code = (f"import sys\nfrom workbench.cli import main\ntry:\n    rc = main({argv!r})\nexcept SystemExit as e:\n"
            f"    rc = e.code\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))\nsys.exit(rc or 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    return done.returncode, eval(done.stdout.strip().splitlines()[-1]), done.stderr


def test_help_imports_neither_torch_nor_transformers():
    rc, heavy, _ = modules_after(["--help"])
    assert (rc, heavy) == (0, [])


@pytest.mark.parametrize("command", ["run", "ablate", "train", "distill", "trace", "report", "plot", "list",
                                     "plugins", "new-plugin", "check-plugin"])
def test_each_command_help_imports_neither(command):
    rc, heavy, _ = modules_after([command, "--help"])
    assert (rc, heavy) == (0, [])


@pytest.mark.parametrize("argv", [["run", "--no-such-flag"], ["run", "--cache", "bogus"], ["nosuchcommand"],
                                  ["run", "--tau"]])
def test_a_usage_error_imports_neither(argv):
    rc, heavy, err = modules_after(argv)
    assert rc == 2 and heavy == [] and "usage:" in err


def test_the_command_modules_import_nothing_heavy_at_the_top():
    """Each sub-command module only builds its arguments at import; its work imports what it needs."""
    tops = defaultdict(list)
    for path in (ROOT / "workbench" / "commands").glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                tops[path.name].append(ast.unparse(node))
    offending = {name: [i for i in lines if re.search(r"\b(torch|transformers|numpy)\b", i)]
                 for name, lines in tops.items()}
    assert {k: v for k, v in offending.items() if v} == {}
