"""Constrained choices: many right answers, and parallel decoding picks inconsistent combinations.

Prompt `3182` `7509` `=`: two candidate digits per slot (row A, row B). Answer `a_1..a_n b_1..b_n`: each a_i
is either candidate of slot i, and b_i = CODE[a_i], a fixed digit code with no fixed point; e.g. `3502`
then `9403`. Decoded carefully (commit one digit of a pair, then its partner is certain), a model that
knows the rule is always right. Decoded in one forward, a_i and b_i each take the argmax of a two-way
marginal, independently, and a pair agrees only by luck (1/2 per pair): the independence failure that
ParallelBench (Kim et al., 2025) builds its tasks on. Every relation is a constant-offset lookup (a_i
sits P positions after A_i, b_i n positions after a_i), which a small model learns quickly.
"""

from __future__ import annotations

import random

import attrs

from workbench.tasks.base import SyntheticTask

# Fixed-point-free digit code: b = CODE[a]. Without fixed points, a position that copies its partner's
# argmax bias instead of applying the code is always wrong.
CODE = (7, 4, 9, 0, 3, 8, 1, 5, 2, 6)


@attrs.define
class ChoiceTask(SyntheticTask):
    slots: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    response_len: int = attrs.field(default=16)
    name: str = "choice"

    def __attrs_post_init__(self):
        self.require_response_len(2 * self.slots, f"{self.slots} slots and their partners")

    def make(self, rng: random.Random) -> tuple[str, str, str]:
        n = self.slots
        row_a, row_b = [], []
        for _ in range(n):
            x, y = rng.sample(range(10), 2)  # two different candidates, so the choice is real
            row_a.append(x)
            row_b.append(y)
        chosen = [rng.choice(pair) for pair in zip(row_a, row_b)]
        prompt = "".join(map(str, row_a + row_b)) + "="
        answer = "".join(map(str, chosen + [CODE[c] for c in chosen]))
        return prompt, answer, prompt[:-1]

    def check(self, example, output: str) -> bool:
        n = self.slots
        digits = output.strip()
        if len(digits) != 2 * n or not digits.isdigit():
            return False
        candidates = example.final
        return all(
            digits[i] in (candidates[i], candidates[n + i]) and int(digits[n + i]) == CODE[int(digits[i])]
            for i in range(n)
        )
