"""A code-like task: evaluate a short straight-line program over single-digit variables (mod 10).

Prompt `a=3;b=a+4;c=b*a;?c`, answer `a3b7c1>1`: the trace of every assignment, then `>` and the value
asked for. Statements refer to earlier variables, so the trace is a dependency chain with branches.
"""

from __future__ import annotations

import random

import attrs

from workbench.tasks.base import SyntheticTask

_OPS = {"+": lambda a, b: (a + b) % 10, "-": lambda a, b: (a - b) % 10, "*": lambda a, b: (a * b) % 10}


@attrs.define
class ProgramTask(SyntheticTask):
    min_statements: int = attrs.field(default=3, validator=attrs.validators.ge(2))
    max_statements: int = attrs.field(default=6)
    response_len: int = attrs.field(default=16)
    name: str = "program"

    def __attrs_post_init__(self):
        if self.max_statements < self.min_statements:
            raise ValueError("max_statements must be >= min_statements")
        self.require_response_len(2 * self.max_statements + 2, f"{self.max_statements} statements plus the result")

    def make(self, rng: random.Random) -> tuple[str, str, str]:
        n = rng.randint(self.min_statements, self.max_statements)
        names = "abcdefghij"[:n]
        values: dict[str, int] = {}
        statements, trace = [], []
        for i, var in enumerate(names):
            if i == 0:
                values[var] = rng.randrange(10)
                statements.append(f"{var}={values[var]}")
            else:
                left = names[i - 1]  # each statement uses the previous variable: a dependency chain
                op = rng.choice(sorted(_OPS))
                if rng.random() < 0.5:
                    right = str(rng.randrange(10))
                    rv = int(right)
                else:
                    right = rng.choice(names[:i])
                    rv = values[right]
                values[var] = _OPS[op](values[left], rv)
                statements.append(f"{var}={left}{op}{right}")
            trace.append(f"{var}{values[var]}")
        asked = names[-1]
        final = str(values[asked])
        return ";".join(statements) + f";?{asked}", "".join(trace) + ">" + final, final

    def check(self, example, output: str) -> bool:
        return output.rsplit(">", 1)[-1].strip() == example.final if ">" in output else False
