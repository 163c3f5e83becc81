"""A task with many right answers, where decoding positions independently in parallel goes wrong.

Prompt `7395=` (targets S_1..S_n), answer `a_1..a_n b_1..b_n` with a_i + b_i = S_i (mod 10) for every i,
e.g. `2614` + `5781`. Every a_i is free (ten right choices) and fixes its partner b_i. Decoded carefully
(commit one digit, then its partner is certain), a model that knows the rule is always right; decoded in
one forward, each position takes the argmax of its marginal, which is (near) uniform, and a pair agrees
only by luck: the failure mode ParallelBench (Kim et al., 2025) builds its tasks on. The partner of a_i
sits n positions later, so with n = block_size / 2 every pair lies inside one block.
"""

from __future__ import annotations

import random

import attrs

from workbench.tasks.base import SyntheticTask


@attrs.define
class PairSumTask(SyntheticTask):
    pairs: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    response_len: int = attrs.field(default=16)
    name: str = "pairs"

    def __attrs_post_init__(self):
        self.require_response_len(2 * self.pairs, f"{self.pairs} pairs")

    def make(self, rng: random.Random) -> tuple[str, str, str]:
        targets = [rng.randrange(10) for _ in range(self.pairs)]
        firsts = [rng.randrange(10) for _ in range(self.pairs)]
        seconds = [(s - a) % 10 for s, a in zip(targets, firsts)]
        prompt = "".join(map(str, targets)) + "="
        return prompt, "".join(map(str, firsts + seconds)), "".join(map(str, targets))

    def check(self, example, output: str) -> bool:
        digits = output.strip()
        n = self.pairs
        if len(digits) != 2 * n or not digits.isdigit():
            return False
        return all((int(digits[i]) + int(digits[n + i])) % 10 == int(example.final[i]) for i in range(n))
