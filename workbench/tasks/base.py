"""The task contract: a generator of (prompt, answer) examples plus an exact answer checker.

Synthetic tasks draw examples from a seeded generator; a fixed hash-based split keeps the evaluation
examples out of training data whatever the seed, so a model never trains on a prompt it is scored on.
"""

from __future__ import annotations

import hashlib
import random
from typing import Iterator, Protocol, runtime_checkable

import attrs

EVAL_SEED = 20_261_123
# Draws in a row that find no new held-out prompt before a split is declared exhausted.
MAX_MISSES = 20_000


@attrs.frozen
class Example:
    """One sample. `answer` is the full target response (chain of thought included); `final` is what
    the checker compares; `uid` identifies the sample across runs (its index in the evaluation split)."""

    prompt: str
    answer: str
    final: str
    uid: int = 0


@runtime_checkable
class Task(Protocol):
    name: str
    response_len: int  # generation length in tokens (a multiple of the block size is the caller's choice)

    def train_stream(self, seed: int) -> Iterator[Example]:
        """Endless training examples, never one from the evaluation split."""

    def eval_split(self, n: int) -> list[Example]:
        """The first n examples of the fixed held-out evaluation split."""

    def check(self, example: Example, output: str) -> bool:
        """True when `output` (the decoded response text, specials removed) answers `example` correctly."""

    # Optional: `identity() -> dict`, plain JSON data that changes whenever the examples or the checker do (a
    # file's sha256, a generator's parameters). The results store keys runs on it (`workbench.results.provenance`);
    # a task without one is keyed on its class and name only.


def is_held_out(prompt: str, every: int = 8) -> bool:
    """Deterministic split: one prompt in `every` belongs to evaluation only (stable across processes)."""
    return int(hashlib.sha256(prompt.encode()).hexdigest()[:8], 16) % every == 0


class SyntheticTask:
    """Base for generated tasks: subclasses implement `make(rng) -> (prompt, answer, final)` and `check`."""

    name = "synthetic"
    response_len = 16

    def make(self, rng: random.Random) -> tuple[str, str, str]:
        raise NotImplementedError

    def identity(self) -> dict:
        """Class and parameters (the attrs fields of a subclass): what the examples are generated from."""
        cls = type(self)
        params = (attrs.asdict(self) if attrs.has(cls)
                  else {k: v for k, v in vars(self).items() if not k.startswith("_")})
        return {"class": f"{cls.__module__}.{cls.__qualname__}", "params": params}

    def require_response_len(self, needed: int, what: str) -> None:
        """ValueError unless `response_len` holds the `needed` positions of the longest answer (`what`)."""
        if needed > self.response_len:
            raise ValueError(f"response_len {self.response_len} cannot hold {what}; use response_len >= {needed}")

    def train_stream(self, seed: int) -> Iterator[Example]:
        rng = random.Random(seed)
        while True:
            prompt, answer, final = self.make(rng)
            if not is_held_out(prompt):
                yield Example(prompt, answer, final)

    def eval_split(self, n: int) -> list[Example]:
        rng = random.Random(EVAL_SEED)
        out: list[Example] = []
        seen: set[str] = set()
        misses = 0
        while len(out) < n:
            prompt, answer, final = self.make(rng)
            if is_held_out(prompt) and prompt not in seen:
                seen.add(prompt)
                out.append(Example(prompt, answer, final, uid=len(out)))
                misses = 0
            else:
                misses += 1
                if misses > MAX_MISSES:  # a small prompt space holds fewer held-out prompts than asked for
                    raise ValueError(f"task {self.name!r} has only {len(out)} held-out prompts with these "
                                     f"parameters; ask for fewer or make the task larger")
        return out
