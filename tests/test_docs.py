"""The documentation stands alone: a clone of the repository has everything README and docs/ point at.

README.md and docs/*.md must not send readers outside the repository (the development machine's `../shared`
or `/work/shared` notes), and every `docs/*.md` file README names, and every relative link between the docs
(anchors included), must exist.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
# Where the design and algorithm notes lived before they were written into docs/.
OUTSIDE = re.compile(r"\.\./shared|/work/shared|shared/(?:DESIGN|ALGORITHMS)\.md")
# The code's docstrings point at the docs too; only these trees ship with the package or the repository.
CODE_TREES = ("workbench", "strategies", "plugins", "trainers", "benchmarks", "examples")
DOC_PATH = re.compile(r"docs/[\w./-]+?\.md")
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")


def doc_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)  # no headings in code
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", text, flags=re.M)}


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: p.name)
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


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: p.name)
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
