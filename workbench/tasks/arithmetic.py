"""Chained arithmetic with a chain of thought: running sums mod 10.

Prompt `35182=`, answer `38907>7`: the k-th answer digit is (d_1 + ... + d_k) mod 10, then `>` and the
final value. Each partial sum depends on the previous one: decoding the positions of one block in
parallel, before their predecessors are known, is what makes errors, while decoding carefully (one
dependent step at a time) is easy. With a fixed number of terms (the default) the k-th answer digit
sits at a constant distance from the k-th prompt digit, a relation a small model learns quickly.
`labels=True` writes `a3b5c1=` / `a3b8c9>9` instead: every step becomes a content lookup, which works
for any number of terms but takes a model much longer to learn (see the lab log).
`scramble=True` (the `chain` task) passes every partial sum through a fixed permutation of the digits,
s_k = PI[(s_{k-1} + d_k) mod 10]: each step is still one lookup, but the chain is no longer a prefix
sum, which a model can learn to compute for all positions at once by attending to the whole prefix
(lab log, run 3); a composition of permutations has to be evaluated step by step.
The checker reads the value after the last `>`.
"""

from __future__ import annotations

import random

import attrs

from workbench.tasks.base import SyntheticTask


# A fixed permutation of the digits with no fixed point (so no step is an identity by accident).
SCRAMBLE = (3, 8, 1, 9, 0, 6, 2, 7, 5, 4)


@attrs.define
class RunningSumTask(SyntheticTask):
    min_terms: int = attrs.field(default=8, validator=attrs.validators.ge(1))
    max_terms: int = attrs.field(default=8, validator=attrs.validators.le(26))
    labels: bool = attrs.field(default=False)
    scramble: bool = attrs.field(default=False)
    modulus: int = attrs.field(default=10, validator=attrs.validators.in_(range(2, 11)))
    response_len: int = attrs.field(default=16)
    name: str = "sum"

    def __attrs_post_init__(self):
        if self.max_terms < self.min_terms:
            raise ValueError(f"max_terms ({self.max_terms}) must be >= min_terms ({self.min_terms})")
        self.require_response_len((2 if self.labels else 1) * self.max_terms + 2,
                                  f"{self.max_terms} steps plus '>' and the final value")

    def make(self, rng: random.Random) -> tuple[str, str, str]:
        n = rng.randint(self.min_terms, self.max_terms)
        digits = [rng.randrange(self.modulus) for _ in range(n)]
        labels = "abcdefghijklmnopqrstuvwxyz"[:n] if self.labels else [""] * n
        steps, total = [], 0
        for label, d in zip(labels, digits):
            total = (total + d) % self.modulus
            if self.scramble:
                total = SCRAMBLE[total] % self.modulus
            steps.append(f"{label}{total}")
        final = str(total)
        prompt = "".join(f"{label}{d}" for label, d in zip(labels, digits)) + "="
        return prompt, "".join(steps) + ">" + final, final

    def check(self, example, output: str) -> bool:
        return output.rsplit(">", 1)[-1].strip() == example.final if ">" in output else False
