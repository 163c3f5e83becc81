"""Answer checks for generated lm-eval samples, so the results store knows which ones were right.

lm-eval scores every answer with the task's own metric after the model returns, and never tells the model;
the results store, though, records each sample's correctness when it is decoded (`workbench report` reads
it). The `check` model argument chooses how the harness judges a generated answer against its lm-eval
document, called by `workbench.harness.generation` once per decoded request:

- `none` (default): not judged; the sample is stored as not correct, with `checked: false` in its extras.
- `number`: GSM8K-style, the last number of the answer (after `####` when present) against the number in the
  document's `answer_field` (`workbench.tasks.jsonl.extract_number`, the check of `--task jsonl:...`).
- `exact`: the stripped answer against the stripped `answer_field`.
- a workbench task name (`choice`, `sum`, ...): that task's own checker, with the document's `final` field as
  the value it compares (documents written from `load_task(name).eval_split(n)` carry it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CHECKS = ("none", "number", "exact")

# (document, answer text) -> (correct, the expected value stored beside the sample, or None)
Check = Callable[[dict, str], tuple[bool, "str | None"]]


def _field(doc: dict, field: str) -> str:
    if field not in doc:
        raise KeyError(f"the lm-eval document has no field {field!r} to check the answer against "
                       f"(fields: {', '.join(map(str, doc))}); pass answer_field=NAME or check=none")
    return str(doc[field])


def make_check(name: str, answer_field: str) -> Check | None:
    """The check called `name`; None for `none`. ValueError for a name that is neither a check nor a task."""
    from workbench.tasks.jsonl import extract_number

    if name == "none":
        return None
    if name == "number":
        def number(doc: dict, text: str) -> tuple[bool, str | None]:
            expected = extract_number(_field(doc, answer_field))
            return expected is not None and extract_number(text) == expected, expected
        return number
    if name == "exact":
        def exact(doc: dict, text: str) -> tuple[bool, str | None]:
            expected = _field(doc, answer_field).strip()
            return text.strip() == expected, expected
        return exact
    from workbench.tasks import Example, load_task

    task = load_task(name)  # ValueError naming the valid tasks

    def task_check(doc: dict, text: str) -> tuple[bool, str | None]:
        final = _field(doc, "final")
        example = Example(prompt=str(doc.get("prompt", "")), answer=str(doc.get("answer", "")), final=final)
        return bool(task.check(example, text)), final
    return task_check


def judge(check: Check | None, doc: Any, text: str) -> tuple[bool, str | None]:
    """(correct, expected) of one answer; (False, None) when unchecked."""
    if check is None or not isinstance(doc, dict):
        return False, None
    return check(doc, text)
