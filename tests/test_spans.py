"""The `spans` task: independent two-digit spans; the checker accepts exactly the consistent answers, and every
relation sits at a constant offset (prompt and answer share the layout)."""

from __future__ import annotations

import itertools

import pytest

from workbench.tasks import load_task
from workbench.tasks.base import is_held_out
from workbench.tasks.choice import CODE


def test_reference_answers_pass_fit_one_block_and_keep_the_layout():
    task = load_task("spans")
    for ex in task.eval_split(30) + list(itertools.islice(task.train_stream(0), 30)):
        assert task.check(ex, ex.answer)
        assert len(ex.answer) + 1 <= task.response_len == 32  # answer and its EOS in one block of 32
        prompt = ex.prompt[:-1]
        assert len(prompt) == len(ex.answer)  # same layout: answer position j reads prompt position j
        for j in range(0, len(prompt), 3):
            x, y, a, b = prompt[j], prompt[j + 1], ex.answer[j], ex.answer[j + 1]
            assert x != y and a in (x, y) and int(b) == CODE[int(a)]
        assert [c for c in ex.answer[2::3]] == [","] * (task.slots - 1)


def test_checker_accepts_every_consistent_answer_and_nothing_else():
    task = load_task("spans", slots=3)
    ex = task.eval_split(1)[0]
    slots = ex.final.split(",")
    answers = {",".join(f"{a}{CODE[int(a)]}" for a in picks) for picks in itertools.product(*slots)}
    assert len(answers) == 8 and all(task.check(ex, a) for a in answers)
    good = ex.answer
    a0, b0 = good[0], good[1]
    other = slots[0][1] if a0 == slots[0][0] else slots[0][0]
    assert not task.check(ex, other + b0 + good[2:])  # a span whose digits disagree
    assert not task.check(ex, good.replace(",", ";"))  # the certain positions matter too
    assert not task.check(ex, good[:-3])  # a span missing
    assert not task.check(ex, good + ",11")  # a span too many
    outside = next(str(d) for d in range(10) if str(d) not in slots[0])
    assert not task.check(ex, outside + str(CODE[int(outside)]) + good[2:])  # consistent, but not a candidate


def test_held_out_prompts_never_reach_training():
    task = load_task("spans")
    split = task.eval_split(20)
    assert all(is_held_out(ex.prompt) for ex in split) and len({ex.prompt for ex in split}) == 20
    assert not any(is_held_out(ex.prompt) for ex in itertools.islice(task.train_stream(5), 200))


def test_a_response_too_short_for_the_spans_is_refused():
    with pytest.raises(ValueError, match="response_len >= 23"):
        load_task("spans", response_len=16)
