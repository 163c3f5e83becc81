"""Independent spans: a long answer whose careful decoding is not sequential, so parallel decoding can gain a lot.

Prompt `37,50,12,...,98=`: k slots of two different candidate digits. Answer `30,58,...`: one span per slot,
`a_i b_i` with a_i either candidate of slot i and b_i = CODE[a_i] (the `choice` task's code), spans separated by
commas. The spans are independent of each other, the two digits of a span depend on each other, and the commas
(and the EOS after the last span) are certain. So:

- a careful decoder (threshold 0.95) commits every comma and EOS in its first forward, then one digit of one
  span (no digit is certain before its partner), then that span's partner, ...: 1 + 2k forwards;
- the best decoder needs 2: one digit of every span at once, then every partner (the spans are independent);
- one forward for everything picks each span's two digits from two-way marginals independently: a span
  agrees with probability 1/2, the whole answer with 2^-k.

With k = 8 (default): 23 answer tokens in one block of 32, TPF 23/17 = 1.35 for the careful decoder against
23/2 = 11.5 possible (8.5x), where `choice` allows 3x. Every relation is a constant-offset lookup: prompt and
answer share the layout (a_i sits P = 3k positions after x_i, the comma after a span P after the prompt's),
and b_i is the next position after a_i.
"""

from __future__ import annotations

import random

import attrs

from workbench.tasks.base import SyntheticTask
from workbench.tasks.choice import CODE


@attrs.define
class SpansTask(SyntheticTask):
    slots: int = attrs.field(default=8, validator=attrs.validators.ge(1))
    response_len: int = attrs.field(default=32)
    name: str = "spans"

    def __attrs_post_init__(self):
        self.require_response_len(3 * self.slots - 1, f"{self.slots} spans of two digits and their commas")

    def make(self, rng: random.Random) -> tuple[str, str, str]:
        candidates = [rng.sample(range(10), 2) for _ in range(self.slots)]  # two different digits per slot
        chosen = [rng.choice(pair) for pair in candidates]
        prompt = ",".join(f"{x}{y}" for x, y in candidates) + "="
        answer = ",".join(f"{a}{CODE[a]}" for a in chosen)
        return prompt, answer, prompt[:-1]

    def check(self, example, output: str) -> bool:
        spans = output.strip().split(",")
        slots = example.final.split(",")
        if len(spans) != len(slots):
            return False
        return all(len(s) == 2 and s.isdigit() and s[0] in slot and int(s[1]) == CODE[int(s[0])]
                   for s, slot in zip(spans, slots))
