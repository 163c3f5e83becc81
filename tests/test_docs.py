"""The documentation stands alone and stays true: a clone of the repository has everything README, lab/README.md
and docs/ point at, and every `workbench` command they show still parses.

README.md, lab/README.md and docs/*.md must not send readers outside the repository (the development machine's
`../shared` or `/work/shared` notes); README links every docs page and lab/README.md; every `docs/*.md` file
README names, every relative link between them (anchors included) and every `test_file.py::test_name` they
cite must exist; and every `workbench ...` command line in their code blocks must parse with the CLI's own
parser (inline commands: their sub-command and options must exist), so a renamed or removed option fails here.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LAB_README = ROOT / "lab" / "README.md"
DOCS = ROOT / "docs"
# Where the design and algorithm notes lived before they were written into docs/.
OUTSIDE = re.compile(r"\.\./shared|/work/shared|shared/(?:DESIGN|ALGORITHMS)\.md")
# The code's docstrings point at the docs too; only these trees ship with the package or the repository.
CODE_TREES = ("workbench", "strategies", "plugins", "trainers", "benchmarks", "examples")
DOC_PATH = re.compile(r"docs/[\w./-]+?\.md")
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")


def doc_files() -> list[Path]:
    return [README, LAB_README, *sorted(DOCS.glob("*.md"))]


def slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)  # no headings in code
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", text, flags=re.M)}


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_docs_do_not_point_outside_the_repository(path):
    hits = [f"{path.name}:{n}: {line.strip()}" for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if OUTSIDE.search(line)]
    assert not hits, "documentation must stand alone; point at docs/design.md or docs/algorithms.md:\n" + \
        "\n".join(hits)


def test_code_points_at_the_docs_not_at_the_shared_notes():
    hits = []
    for tree in CODE_TREES:
        for path in sorted((ROOT / tree).rglob("*")):
            if path.suffix not in (".py", ".md", ".sh", ".txt") or not path.is_file():
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if OUTSIDE.search(line) or re.search(r"\b(?:ALGORITHMS|DESIGN)\.md", line):
                    hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not hits, "say docs/algorithms.md or docs/design.md instead:\n" + "\n".join(hits)


def test_every_docs_file_readme_names_exists():
    named = sorted(set(DOC_PATH.findall(README.read_text(encoding="utf-8"))))
    assert {"docs/design.md", "docs/algorithms.md"} <= set(named), "README must point at the design and algorithms"
    missing = [name for name in named if not (ROOT / name).is_file()]
    assert not missing, f"README names docs that do not exist: {missing}"


def test_readme_links_every_page_the_material_moved_to():
    """The README is short because the rest moved: every docs page and the lab's README is one link away."""
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in MD_LINK.findall(README.read_text("utf-8"))}
    unlinked = [p.relative_to(ROOT).as_posix() for p in (LAB_README, *sorted(DOCS.glob("*.md"))) if p not in linked]
    assert not unlinked, f"README does not link {unlinked}"


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(path):
    broken = []
    for target in MD_LINK.findall(path.read_text(encoding="utf-8")):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part) if file_part else path
        if not linked.exists():
            broken.append(f"{target} (no file {linked.relative_to(ROOT) if linked.is_relative_to(ROOT) else linked})")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target} (no heading #{anchor} in {linked.name})")
    assert not broken, f"{path.name}: broken links: {broken}"


# -- the tests the docs cite -----------------------------------------------------------------------------------

# `test_x.py::test_name`, or `::test_name` continuing the last file named (the reliability table's style).
CITED_TEST = re.compile(r"`(?:tests/)?(test_\w+\.py)(?:::(\w+))?`|`::(\w+)`")
USER_FILES = {"test_myidea.py"}  # the tutorial's scaffolded plugin test, written in the reader's folder


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_the_tests_the_docs_cite_exist(path):
    missing, current = [], None
    for file_name, name, continued in CITED_TEST.findall(path.read_text(encoding="utf-8")):
        current = file_name or current
        if current in USER_FILES:
            continue
        test_file = ROOT / "tests" / current if current else None
        if test_file is None or not test_file.is_file():
            missing.append(f"{current or '::' + continued} (no such test file)")
        elif (name or continued) and not re.search(rf"^\s*def {name or continued}\(", test_file.read_text(), re.M):
            missing.append(f"{current}::{name or continued}")
    assert not missing, f"{path.relative_to(ROOT)} cites tests that do not exist: {missing}"


# -- every command the docs show parses ------------------------------------------------------------------------

FENCE = re.compile(r"^\s*```(\S*)\s*$")
SHELL_BLOCKS = {"", "bash", "sh", "shell", "console"}
OPERATOR = re.compile(r"^[;&|<>()]+$")  # shell control and redirection tokens end a command's arguments
ASSIGNMENT = re.compile(r"^\w+=")


def shell_lines(text: str) -> list[tuple[int, str]]:
    """(line number, command line) of every shell command in the page's code blocks: fenced blocks in a shell
    language or none (in a `console` block, only the `$ ` lines), and blocks indented by four spaces; a line
    ending in a backslash is joined with the lines it continues onto."""
    out: list[tuple[int, str]] = []
    fence: str | None = None
    indented = False
    previous_blank = True
    pending: tuple[int, str] | None = None
    for n, line in enumerate(text.splitlines(), 1):
        if pending is not None:  # a continuation line
            start, joined = pending
            pending = None
            line_text = joined + " " + line.strip()
            if line_text.endswith("\\"):
                pending = (start, line_text[:-1].rstrip())
            else:
                out.append((start, line_text))
            continue
        fenced = FENCE.match(line)
        command = None
        if fence is not None:
            if fenced and not fenced.group(1):
                fence = None
            elif fence in SHELL_BLOCKS:
                if fence == "console":
                    command = line.strip()[2:] if line.strip().startswith("$ ") else None
                else:
                    command = line.strip()
        elif fenced:
            fence, indented = fenced.group(1), False
        elif line.startswith("    ") and (previous_blank or indented):
            indented, command = True, line.strip()
        elif line.strip():
            indented = False
        previous_blank = not line.strip()
        if command:
            if command.endswith("\\"):
                pending = (n, command[:-1].rstrip())
            else:
                out.append((n, command))
    return out


def workbench_argvs(command_line: str) -> list[list[str]]:
    """The argument lists of every `workbench` command in one shell line: `workbench ARGS`, after any
    `NAME=value` assignments, or `... -m workbench ARGS` (`torchrun`, `python`), up to the next shell operator
    or comment. `lm_eval --model workbench` is not a workbench command."""
    lexer = shlex.shlex(command_line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: not a shell line
        return []
    commands, simple = [], []
    for token in [*tokens, ";"]:
        if not OPERATOR.match(token):
            simple.append(token)
            continue
        words = simple
        while words and ASSIGNMENT.match(words[0]):
            words = words[1:]
        if words and words[0] == "workbench":
            commands.append(words[1:])
        elif "-m" in words[:-1] and words[words.index("-m") + 1] == "workbench":
            commands.append(words[words.index("-m") + 2:])
        simple = []
    return commands


def documented_commands() -> list[tuple[str, list[str]]]:
    found = []
    for path in doc_files():
        for n, line in shell_lines(path.read_text(encoding="utf-8")):
            for argv in workbench_argvs(line):
                found.append((f"{path.relative_to(ROOT).as_posix()}:{n}", argv))
    return found


def parse_error(argv: list[str]) -> str | None:
    """argparse's message when the `workbench` CLI's own parser rejects `argv`, else None."""
    from workbench.cli import build_parser

    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(argv)
    except SystemExit as exit_:
        return (stderr.getvalue().strip().splitlines() or [f"exit {exit_.code}"])[-1] if exit_.code else None
    return None


def test_the_command_lines_are_found_where_the_docs_show_them():
    text = """Run:

```bash
pip install -e . && workbench run --strategy spd \\
    --trainer oput   # a comment
lm_eval --model workbench --tasks gsm8k
```

```console
$ OMP_NUM_THREADS=1 workbench list
workbench run: error: this line is output
```

    torchrun --nproc_per_node 2 -m workbench ablate --strategies spd,hard \\
        --store results.db > log.txt
"""
    found = [argv for _, line in shell_lines(text) for argv in workbench_argvs(line)]
    assert found == [["run", "--strategy", "spd", "--trainer", "oput"], ["list"],
                     ["ablate", "--strategies", "spd,hard", "--store", "results.db"]]
    assert parse_error(["run", "--strategy", "spd", "--no-such-option", "1"]) is not None
    assert parse_error(["no-such-command"]) is not None
    assert parse_error(found[0]) is None


def test_every_workbench_command_in_the_docs_parses():
    commands = documented_commands()
    assert len(commands) >= 20, f"found only {len(commands)} commands; is the extraction broken?"
    pages = {where.split(":")[0] for where, _ in commands}
    assert {"README.md", "lab/README.md", "docs/tutorial.md", "docs/multi_gpu.md"} <= pages
    failures = [f"{where}: workbench {shlex.join(argv)}\n    {error}"
                for where, argv in commands if (error := parse_error(argv))]
    assert not failures, "commands in the docs the CLI no longer takes:\n" + "\n".join(failures)


INLINE_COMMAND = re.compile(r"(?<!`)`(workbench [^`]+)`(?!`)")


def test_every_option_of_an_inline_workbench_command_exists():
    """Commands quoted in the prose and tables (`workbench train --data FILE`) are often fragments without their
    required options, so they are not parsed whole; but their sub-command and every `--option` they name must
    still be the CLI's."""
    from workbench.cli import build_parser

    subparsers = next(a for a in build_parser()._actions if a.choices and "run" in a.choices).choices
    unknown, seen = [], 0
    for path in doc_files():
        prose = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
        for span in INLINE_COMMAND.findall(prose):
            for argv in workbench_argvs(span):
                if not argv or argv[0].isupper() or argv[0].startswith("-"):  # `workbench COMMAND --help`
                    continue
                seen += 1
                where = f"{path.relative_to(ROOT).as_posix()}: `{span}`"
                if argv[0] not in subparsers:
                    unknown.append(f"{where}: no command {argv[0]!r}")
                    continue
                options = subparsers[argv[0]]._option_string_actions
                unknown += [f"{where}: no option {word.split('=')[0]}" for word in argv[1:]
                            if word.startswith("--") and word.split("=")[0] not in options]
    assert seen >= 20, f"found only {seen} inline commands; is the extraction broken?"
    assert not unknown, "options the docs name that the CLI no longer has:\n" + "\n".join(unknown)


def test_the_strategies_table_in_design_md_is_the_code():
    """docs/design.md's "Strategies at a glance": one row per built-in, with the hooks it answers, what it
    declares to the core and what --tau sets, as the code has them."""
    from workbench.decoding.catalog import BUILTIN_STRATEGIES
    from workbench.decoding.registry import _load_strategy_module, _strategy_target, implemented_hooks

    text = (DOCS / "design.md").read_text(encoding="utf-8")
    section = text[text.index("### Strategies at a glance"):]
    rows = {m.group(1): m for m in re.finditer(r"^\| `([\w-]+)` \| [^|]+ \| ([^|]+) \| ([^|]+) \| `(\w+)` \|$",
                                                section, flags=re.M)}
    assert set(rows) == {name for name, _ in BUILTIN_STRATEGIES}
    for name, m in rows.items():
        target = _strategy_target(_load_strategy_module(name))
        declared = [a for a in ("needs_probs", "needs_logits", "needs_shadow", "canvas_view") if getattr(target, a, False)]
        declared += ["forwards_per_block"] if callable(getattr(target, "forwards_per_block", None)) else []
        assert re.findall(r"`(\w+)`", m.group(2)) == list(implemented_hooks(target)), name
        assert re.findall(r"`(\w+)`", m.group(3)) == declared, name
        assert m.group(4) == target.main_threshold, name
