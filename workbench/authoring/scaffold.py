"""Templates of `workbench new-plugin`: a ready-to-run plugin file, its test file, and a package layout.

Hook signatures and docstrings are read from `workbench.decoding.hookspecs` when the files are written, so a
generated plugin always documents the hooks as the core calls them. Every generated hook body is a
working rule (the promote template is a confidence threshold with one line to edit), so the file runs
as-is with `workbench run --strategy spd --plugin NAME.py` and passes `workbench check-plugin NAME.py`.
"""

from __future__ import annotations

import inspect
import keyword
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path

from workbench.decoding import hookspecs
from workbench.decoding.catalog import PluginError
from workbench.decoding.markers import ALL_HOOKS

DEFAULT_HOOKS = ("promote",)
# Names a plugin module must not take: they would shadow what the generated files import.
RESERVED = {"workbench", "torch", "attrs", "pluggy", "strategies", "plugins", "trainers", "test", "tests"}


class ScaffoldError(PluginError):
    """Bad `new-plugin` input (name, hooks) or a file that would be overwritten."""


# Per hook: the body lines (8-space indented in the output) and the class fields it needs.
BODIES: dict[str, tuple[str, ...]] = {
    "fill_block": (
        "# <- EDIT: fix positions before the block is decoded (infilling); FREE (-1) = decode it.",
        "# Here: nothing fixed. A template per sample would be looked up with state.sample_ids.",
        "return torch.full_like(state.ids, FREE)  # (B, L) long",
    ),
    "guidance": (
        "# <- EDIT: classifier-free guidance for this block, e.g. LLaDA's: the prompt replaced by the mask id,",
        "#   prompt = state.context.shape[1] - state.start  # prompt columns (left padding included)",
        "#   context = state.context.clone(); context[:, :prompt] = state.mask_id",
        "#   return Guidance(context=context, scale=0.5)  # the step reads u + (0.5 + 1)(c - u)",
        "return None  # no guidance (a guided block costs a second forward per step)",
    ),
    "embed_state": (
        "table = model.embedding_table()  # (V, D)",
        "# <- EDIT: what a token position is fed; here its current top (hard-token refinement). Open",
        "# positions keep their input: state.ids holds the mask id (or, on a uniform-state canvas, noise).",
        "return torch.where(state.is_mask[..., None], table[state.ids], table[state.top])  # (B, L, D)",
    ),
    "process_logits": (
        "# <- EDIT: transform the running rows' logits (b, L, V) before top / conf are read; here a",
        "# temperature. Keep the core's rule that MASK is never predicted.",
        "if state.mask_id is not None:",
        "    logits[..., state.mask_id] = float(\"-inf\")",
        "return logits / self.temperature",
    ),
    "revoke": (
        "# <- EDIT: token positions that go back to open (remasking); here those whose current token",
        "# lost confidence (WINO-style). state.token_positions are the revocable positions.",
        "current = state.probs.gather(-1, state.ids[..., None]).squeeze(-1)  # (B, L) p(token) now",
        "return state.token_positions & (current < self.keep)",
    ),
    "promote": (
        "open_ = state.open_masks  # (B, L) bool: active open positions of rows still running",
        "# A row that promotes nothing gets its most confident open position from the core (progress);",
        "# return Promotion(positions=positions, tokens=..., fallback=False) to choose tokens or opt out of that.",
        "return open_ & (state.conf >= self.tau)  # <- EDIT: your rule, (B, L) bool",
    ),
    "converge": (
        "# <- EDIT: when is a row's block final? Here: when no active mask position is left.",
        "return ~(state.is_mask & state.active).any(-1)  # (B,) bool",
    ),
    "commit": (
        "# <- EDIT: the block's final ids. Here: promoted ids, leftover masks (forward cap) get their top.",
        "return torch.where(state.is_mask, state.top, state.ids)  # (B, L) long",
    ),
    "on_step_end": (
        "# <- EDIT: observe a step; here: tokens promoted per step, kept in this plugin's stash entry.",
        "state.stash.setdefault(PROMOTED_PER_STEP, []).append(int(state.promoted.sum()))",
    ),
    "on_block_end": (
        "# <- EDIT: observe a finished block; committed is (B, L) long. Results are ignored.",
        "return None",
    ),
    "on_generation_end": (
        "# <- EDIT: observe the RowResults of a generate call (ids, nfe, tokens, block_steps...).",
        "return None",
    ),
}
FIELDS: dict[str, tuple[str, ...]] = {
    "promote": ("tau: float = attrs.field(default=0.9, validator=unit_interval)  "
                "# <- EDIT: confidence an open position needs",),
    "process_logits": ("temperature: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))  "
                       "# <- EDIT",),
    "revoke": ("keep: float = attrs.field(default=0.1, validator=unit_interval)  "
               "# <- EDIT: p(token) below which a token goes back to open",),
}
# Hooks whose template reads state.probs: the generated class then asks for it.
NEEDS_PROBS = ("revoke",)


def class_name(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part) or "Plugin"


def validate_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or keyword.iskeyword(name):
        hint = re.sub(r"\W", "_", name)
        raise ScaffoldError(f"plugin name {name!r} must be a Python identifier (it becomes the module name); "
                            f"try {hint!r}")
    if name in RESERVED or name.startswith("test_"):
        raise ScaffoldError(f"plugin name {name!r} would shadow a module the plugin or its tests import; "
                            f"pick another, e.g. 'my_{name}'")
    return name


def parse_hooks(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """`promote,converge` -> ('promote', 'converge') in spec order; unknown names raise ScaffoldError."""
    if spec is None:
        return DEFAULT_HOOKS
    names = [h.strip() for h in (spec.split(",") if isinstance(spec, str) else spec) if h.strip()]
    unknown = [h for h in names if h not in ALL_HOOKS]
    if unknown or not names:
        raise ScaffoldError(f"unknown hook(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
                            f"valid hooks: {', '.join(ALL_HOOKS)}")
    return tuple(h for h in ALL_HOOKS if h in names)


def _method(hook: str) -> str:
    spec = getattr(hookspecs, hook)
    sig = inspect.signature(spec)
    params = ", ".join(["self"] + [f"{p.name}: {p.annotation}" for p in sig.parameters.values()])
    doc = inspect.getdoc(spec).replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    body = "\n".join(" " * 8 + line for line in BODIES[hook])
    return (f"    @hookimpl\n"
            f"    def {hook}({params}) -> {sig.return_annotation}:\n"
            f'{textwrap.indent(chr(34) * 3 + doc + chr(10) + chr(34) * 3, " " * 8)}\n'
            f"{body}\n")


def render_plugin(name: str, hooks: Sequence[str]) -> str:
    cls = class_name(name)
    annotations = " ".join(str(p.annotation) for h in hooks
                           for p in inspect.signature(getattr(hookspecs, h)).parameters.values())
    state_names = ["BlockState"] if "BlockState" in annotations else []
    if "RowResult" in annotations:
        state_names.append("RowResult")
    if "on_step_end" in hooks:
        state_names.append("StashKey")
    if "fill_block" in hooks:
        state_names.append("FREE")
    if "promote" in hooks:
        state_names.append("Promotion")
    if "guidance" in hooks:
        state_names.append("Guidance")
    imports = ["from __future__ import annotations", "", "from typing import ClassVar", "", "import attrs",
               "import torch", ""]
    validated = any(h in hooks for h in ("promote", "revoke"))
    public = state_names + (["Denoiser"] if "Denoiser" in annotations else []) + ["hookimpl"] + (
        ["unit_interval"] if validated else [])
    imports.append(f"from workbench import {', '.join(sorted(public))}")  # the public plugin API (docs/api.md)
    fields = [line for h in hooks for line in FIELDS.get(h, ())]
    scratch = ("\n# Per-generate scratch lives in the state's typed stash, never on the plugin object.\n"
               "PROMOTED_PER_STEP = StashKey[list]()\n" if "on_step_end" in hooks else "")
    methods = "\n".join(_method(h) for h in hooks)
    field_text = "".join(f"    {line}\n" for line in fields)
    return f'''"""{name}: a decoding plugin for the dLLM workbench (answers: {", ".join(hooks)}).

It answers only the hooks below; the strategy it is combined with answers the others:

    workbench run --strategy spd --plugin {name}.py --model PATH    # or --trainer oput
    workbench check-plugin {name}.py                                # invariants x every built-in strategy
    pytest test_{name}.py                                           # the same checks in your test suite

Written by `workbench new-plugin`; the hook docstrings are the core's specifications (workbench/decoding/hookspecs.py).
Look for `<- EDIT`.
"""

{chr(10).join(imports)}
{scratch}

@attrs.frozen(eq=False, kw_only=True)  # eq=False: pluggy compares plugins with ==
class {cls}:
    """{name}. Parameters are attrs fields with validators; hooks read them from self."""

    # Set True to get the full distribution in state.probs (B, L, V) float32 (costs memory).
    needs_probs: ClassVar[bool] = {any(h in NEEDS_PROBS for h in hooks)}
    # Invariants this plugin keeps for the hooks it implements, checked by `workbench check-plugin`:
    # "contiguity" (mask positions stay a contiguous suffix), "monotonicity" (promoted tokens never change).
    claims: ClassVar[tuple[str, ...]] = ()

{field_text}
{methods}

# What `--plugin {name}.py` builds (with default parameters) and what the `workbench` entry point names.
STRATEGY = {cls}
'''


def render_test(name: str, hooks: Sequence[str]) -> str:
    unit = ""
    if "promote" in hooks:
        unit = '''

def test_promote_on_hand_made_confidences():
    """A unit test of the rule on one row of four mask positions; update it when you change the rule."""
    plugin = STRATEGY()
    state = hand_state([[0.95, 0.2, 0.99, 0.5]])
    assert plugin.promote(state).tolist() == [[True, False, True, False]]
'''
    return f'''"""Tests of {name}.py: the workbench's shipped decoding-invariant checks, plus a unit test of the rule.

Run with `pytest test_{name}.py`; `workbench check-plugin {name}.py` runs the same checks from the shell.
"""

from pathlib import Path

import pytest

from workbench import CHECK_STRATEGIES, check_invariants, check_plugins, hand_state, load_plugin_file, make_manager

PLUGIN_FILE = Path(__file__).resolve().parent / "{name}.py"
(PLUGIN,) = load_plugin_file(PLUGIN_FILE)  # (name, plugin object)
STRATEGY = type(PLUGIN[1])


@pytest.mark.parametrize("strategy", CHECK_STRATEGIES)
def test_invariants_with_each_builtin_strategy(strategy):
    report = check_plugins([PLUGIN], target=str(PLUGIN_FILE), strategies=[strategy], examples=10)
    assert report.ok, report.text()


def test_strategy_agnostic_properties_with_spd():
    check_invariants(lambda: make_manager("spd", extra_plugins=[PLUGIN[1]]), seeds=(0, 1))
{unit}'''


def render_pyproject(name: str) -> str:
    return f'''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "workbench-{name.replace("_", "-")}"
version = "0.1.0"
description = "{name}: a decoding plugin for the dLLM workbench"
requires-python = ">=3.10"
dependencies = ["dllm-workbench"]

# `workbench run --strategy {name}` and `workbench plugins` find it here. The entry point must name a
# module (which exposes STRATEGY), not a class.
[project.entry-points.workbench]
{name} = "{name}"

[tool.setuptools]
py-modules = ["{name}"]
'''


def render_readme(name: str) -> str:
    return f"""# {name}

A decoding plugin for the dLLM workbench.

    pip install -e .                               # registers the `workbench` entry point `{name}`
    workbench plugins                              # lists it
    workbench check-plugin {name}                  # invariants x every built-in strategy
    workbench run --strategy {name} --model PATH   # as a strategy of its own (core defaults elsewhere)
    workbench run --strategy spd --plugin {name}.py --model PATH   # on top of SPD
    pytest
"""


def plan(name: str, hooks: Sequence[str], *, package: bool = False, directory: str | Path = ".") -> dict[Path, str]:
    """Path -> content of every file `new-plugin` writes."""
    name = validate_name(name)
    hooks = parse_hooks(hooks)
    root = Path(directory) / name if package else Path(directory)
    files = {root / f"{name}.py": render_plugin(name, hooks), root / f"test_{name}.py": render_test(name, hooks)}
    if package:
        files[root / "pyproject.toml"] = render_pyproject(name)
        files[root / "README.md"] = render_readme(name)
    return files


def write(name: str, hooks: Sequence[str] | str | None = None, *, package: bool = False,
          directory: str | Path = ".") -> list[Path]:
    """Write the files of `plan`; refuses (nothing written) when any of them exists."""
    files = plan(name, parse_hooks(hooks), package=package, directory=directory)
    existing = [str(p) for p in files if p.exists()]
    if existing:
        raise ScaffoldError(f"refusing to overwrite {', '.join(existing)}; pick another name or --dir")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "x", encoding="utf-8") as f:  # "x": never clobber a file created meanwhile
            f.write(text)
    return list(files)
