"""Tasks: verifiable synthetic generators and user JSONL files, looked up by name."""

from __future__ import annotations

from functools import partial
from urllib.parse import parse_qs

from workbench.tasks.arithmetic import RunningSumTask
from workbench.tasks.base import Example, Task
from workbench.tasks.jsonl import JsonlTask, TaskFileError
from workbench.tasks.choice import ChoiceTask
from workbench.tasks.pairs import PairSumTask
from workbench.tasks.program import ProgramTask
from workbench.tasks.spans import SpansTask

# Name -> factory; the default task is the one the shipped models were trained on.
BUILTIN_TASKS = {
    "sum": RunningSumTask,
    "chain": partial(RunningSumTask, scramble=True, name="chain"),
    "pairs": PairSumTask,
    "choice": ChoiceTask,
    "program": ProgramTask,
    "spans": SpansTask,
}
DEFAULT_TASK = "choice"


def available_tasks() -> list[str]:
    return sorted(BUILTIN_TASKS) + ["jsonl:PATH"]


def load_task(spec: str, **overrides) -> Task:
    """`sum`, `program`, or `jsonl:PATH[?match=exact]`. Unknown names raise ValueError listing the valid ones."""
    if spec.startswith("jsonl:"):
        path, _, query = spec[len("jsonl:"):].partition("?")
        options = {k: v[-1] for k, v in parse_qs(query).items()}
        return JsonlTask(path, **options, **overrides)
    if spec not in BUILTIN_TASKS:
        raise ValueError(f"unknown task {spec!r}; choose one of: {', '.join(available_tasks())}")
    return BUILTIN_TASKS[spec](**overrides)


__all__ = ["Example", "Task", "TaskFileError", "available_tasks", "load_task", "DEFAULT_TASK"]
