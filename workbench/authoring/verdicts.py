"""The vocabulary of `workbench check-plugin`: the strategies a plugin is combined with by default, the
examples per cell, and the verdicts of a cell. Light (no torch, no hypothesis), so the command line builds
its options without importing the checker (`workbench.authoring.checker`).
"""

from __future__ import annotations

# The strategies a plugin is checked with by default: the absorbing-state built-ins, which the fake models
# decode (uniform-eb, DiffusionGemma's sampler, is a strategy of its own kind: name it to include it).
BUILTIN_NAMES: tuple[str, ...] = ("threshold", "hierarchical", "hard", "spd")
DEFAULT_EXAMPLES = 10  # per cell: 7 invariants x 4 strategies take a few seconds on one core

PASS, FAIL, NA, BLOCKED = "pass", "FAIL", "n/a", "blocked"
