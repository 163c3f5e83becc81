"""What every script that runs the authors' code shares: the checkout, the prompts, the transcript file.

The recorders (`record_*.py`) each import one file or package from a checkout of an upstream repository
given as `--upstream`, note the checkout's commit, draw the same prompts on the tiny model's vocabulary, and
write a golden transcript (`tests/reference/README.md`) with a header naming where each number came from; the
parity scripts (`*_parity.py`) share the checkout half and the `--set` parsing. Those steps live here once,
so that every transcript is laid out and written the same way; what differs between upstream samplers
(shims, views, cases) stays in each recorder.

Nothing here imports upstream code by itself: the caller says which file, and this module only executes it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import torch

ROOT = Path(__file__).resolve().parents[2]
PROMPT_SEED = 1234
PROMPT_LENGTHS = (2, 9, 5, 3, 8, 4, 7, 6)  # mixed, so every batched run (upstream's or the replay's) is left-padded
FIRST_ID = 4  # the native tokenizer reserves 0-3 (PAD, MASK, EOS, UNK): prompts hold ordinary ids only


# -- the checkout ------------------------------------------------------------------------------------------------


def require(upstream: Path, relative: str | Path, repository: str) -> Path:
    """`upstream / relative`, or exit with one line naming the missing file and where to clone it from
    (a wrong `--upstream` is the usual mistake, and a traceback from deep in an import hides it)."""
    path = upstream / relative
    if not path.is_file():
        sys.exit(f"--upstream {upstream}: no {relative} (clone github.com/{repository})")
    return path


def load_module(upstream: Path, relative: str, name: str, repository: str) -> ModuleType:
    """One file of the checkout, imported as a module of its own called `name` (never as part of the
    upstream package, whose `__init__` would pull in training or serving code the samplers do not need)."""
    path = require(upstream, relative, repository)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def commit_of(upstream: Path, *, strict: bool = True) -> str | None:
    """The checkout's HEAD. `strict=False` answers None where it is not a git checkout (for scripts that
    only print the commit or record it as unknown); otherwise that is an error."""
    try:
        return subprocess.run(["git", "-C", str(upstream), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        if strict:
            raise
        return None


# -- the transcript ----------------------------------------------------------------------------------------------


def prompts(vocab: int, first: int = FIRST_ID) -> list[list[int]]:
    """The 8 prompts every transcript shares: ids first..vocab-1 drawn from `PROMPT_SEED`, of `PROMPT_LENGTHS`."""
    gen = torch.Generator().manual_seed(PROMPT_SEED)
    return [torch.randint(first, vocab, (n,), generator=gen).tolist() for n in PROMPT_LENGTHS]


def left_padded(prompts: list[list[int]], pad: int) -> tuple[int, torch.Tensor, torch.Tensor]:
    """(width, ids (N, width), attention mask (N, width) of 0 / 1): the prompts as one batch padded on the
    left, as the authors' batched runs take it (the generated positions then start at `width` in every row)."""
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return width, ids, mask


def source(repository: str, commit: str | None, path: str, function: str, **extra) -> dict:
    """The transcript's `upstream` entry: which function of which file, at which commit, made the decisions."""
    return {"repository": repository, "commit": commit, "path": path, "function": function, **extra}


def transcript(strategy: str | None, upstream: dict, recorder: str, cases: list, *, note: str | None = None,
               model: dict | None = None, **extra) -> dict:
    """A transcript in the key order every file has: strategy, upstream, recorder, note, model, `extra`,
    cases. `recorder` is the recording script's `__file__`; `model` is `tiny.described(spec, model)`; a
    None strategy, note or model is left out."""
    data = {} if strategy is None else {"strategy": strategy}
    data.update(upstream=upstream, recorder=Path(recorder).resolve().relative_to(ROOT).as_posix())
    if note is not None:
        data["note"] = note
    if model is not None:
        data["model"] = model
    return {**data, **extra, "cases": cases}


def dumps(data: dict, *, compact: bool = True) -> str:
    """Indented JSON; `compact` puts every list of numbers on one line (the transcripts stay small and
    diffable). Files first written without it keep `compact=False`, so that re-recording changes no byte."""
    text = json.dumps(data, indent=1)
    if compact:
        text = re.sub(r"\[[-0-9.,\s]*\]", lambda m: re.sub(r"\s+", "", m.group()).replace(",", ", "), text)
    return text + "\n"


def write(path: Path, data: dict, *, compact: bool = True) -> Path:
    """`dumps(data)` to `path`, its folder made first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(data, compact=compact))
    return path


def shown(path: Path) -> str:
    """The path as a summary line prints it: relative to the repository when inside it."""
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


# -- the command line --------------------------------------------------------------------------------------------


def arguments(doc: str, upstream_help: str, out: Path, out_help: str | None = None) -> argparse.ArgumentParser:
    """The parser every recorder starts from: the docstring's first paragraph, `--upstream` (required) and
    `--out` (default `out`); a recorder adds its own options after these."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--upstream", type=Path, required=True, help=upstream_help)
    parser.add_argument("--out", type=Path, default=out, help=out_help)
    return parser


def record_main(doc: str, upstream_help: str, out: Path, out_help: str, load, recorders: dict, *,
                only: bool = True, divergences: bool = True) -> None:
    """The command line of a recorder that writes `out/<name>.json` = `recorders[name](load(upstream), commit)`
    per name (all, or those given with `--only` where `only`), each followed by a summary line: cases, the
    divergences it lists unless `divergences` is False, bytes."""
    parser = arguments(doc, upstream_help, out, out_help)
    if only:
        parser.add_argument("--only", choices=sorted(recorders), action="append", help="record only these files")
    args = parser.parse_args()
    torch.set_num_threads(1)
    up, commit = load(args.upstream), commit_of(args.upstream)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in (args.only if only else None) or recorders:
        data = recorders[name](up, commit)
        path = write(args.out / f"{name}.json", data)
        listed = sum(len(c.get("divergences", [])) for c in data["cases"])
        counted = f"{listed} divergences listed, " if divergences else ""
        print(f"{path}: {len(data['cases'])} cases, {counted}{path.stat().st_size} bytes")


def parse_sets(pairs: list[str]) -> dict:
    """`--set NAME=VALUE` pairs as parameters: a number where VALUE reads as one, true/false as booleans,
    otherwise the string."""
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            out[key] = float(value)
        except ValueError:
            out[key] = {"true": True, "false": False}.get(value.lower(), value)
    return out
