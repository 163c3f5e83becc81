"""Tasks: generators give answers their own checkers accept, held-out prompts never reach training,
checkers reject wrong answers, and bad JSONL files are refused naming the file and line."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.tasks import available_tasks, load_task
from workbench.tasks.base import is_held_out
from workbench.tasks.arithmetic import RunningSumTask
from workbench.tasks.choice import CODE, ChoiceTask
from workbench.tasks.pairs import PairSumTask
from workbench.tasks.program import ProgramTask
from workbench.tasks.jsonl import TaskFileError, extract_number

SYNTHETIC = ["sum", "chain", "program", "pairs", "choice"]


@pytest.mark.parametrize("name", SYNTHETIC)
def test_reference_answers_pass_and_fit_the_response(name):
    task = load_task(name)
    for ex in task.eval_split(50) + list(itertools.islice(task.train_stream(0), 50)):
        assert task.check(ex, ex.answer), ex
        assert len(ex.answer) <= task.response_len


@pytest.mark.parametrize("name", SYNTHETIC)
def test_eval_split_is_fixed_distinct_and_never_trained_on(name):
    task = load_task(name)
    split = task.eval_split(40)
    assert split == load_task(name).eval_split(40)  # fixed whatever else ran before
    assert len({ex.prompt for ex in split}) == 40
    assert [ex.uid for ex in split] == list(range(40))
    assert all(is_held_out(ex.prompt) for ex in split)
    assert not any(is_held_out(ex.prompt) for ex in itertools.islice(task.train_stream(3), 300))


def test_running_sum_chain_of_thought():
    task = load_task("sum")
    ex = next(e for e in task.eval_split(5))
    digits = [int(c) for c in ex.prompt[:-1]]
    sums = [sum(digits[: k + 1]) % 10 for k in range(len(digits))]
    assert ex.answer == "".join(map(str, sums)) + ">" + str(sums[-1])
    assert not task.check(ex, ex.answer[:-1] + str((sums[-1] + 1) % 10))
    assert not task.check(ex, "no answer")


def test_choice_checker_accepts_every_valid_combination_and_nothing_else():
    task = load_task("choice")
    ex = task.eval_split(1)[0]
    row_a, row_b = ex.final[:4], ex.final[4:]
    valid = 0
    for picks in itertools.product(*zip(row_a, row_b)):
        answer = "".join(picks) + "".join(str(CODE[int(p)]) for p in picks)
        assert task.check(ex, answer)
        valid += 1
    assert valid == 16
    good = ex.answer
    assert not task.check(ex, good[:4] + good[4:][::-1] if good[4:] != good[4:][::-1] else good[:7])
    assert not task.check(ex, good[:7])  # too short
    assert not task.check(ex, good[:4] + good[:4])  # partners that copy instead of applying the code


@given(st.integers(0, 9), st.integers(0, 9))
@settings(max_examples=30, deadline=None)
def test_pairs_checker_is_the_rule(a, b):
    task = load_task("pairs", pairs=2)
    ex = task.eval_split(1)[0]
    s0, s1 = int(ex.final[0]), int(ex.final[1])
    good_second = (s1 - 3) % 10
    assert task.check(ex, f"{a}3{b}{good_second}") == ((a + b) % 10 == s0)


def test_a_split_larger_than_the_prompt_space_is_refused():
    with pytest.raises(ValueError, match="held-out prompts"):
        load_task("pairs", pairs=1).eval_split(5)


def test_unknown_task_lists_the_valid_names():
    with pytest.raises(ValueError, match="choose one of"):
        load_task("nosuch")
    assert "choice" in available_tasks()


def test_jsonl_numeric_and_exact(tmp_path):
    path = tmp_path / "gsm.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"prompt": "2+2?", "answer": "so 4 #### 4"}, {"prompt": "big", "answer": "It is 1,234.0"}]))
    task = load_task(f"jsonl:{path}")
    a, b = task.eval_split(10)
    assert (a.final, b.final) == ("4", "1234")
    assert task.check(a, "think... #### 4") and not task.check(a, "#### 5")
    assert task.check(b, "the answer is 1234")
    exact = load_task(f"jsonl:{path}?match=exact")
    first = exact.eval_split(1)[0]
    assert exact.check(first, " so 4 #### 4 ") and not exact.check(first, "4")
    assert extract_number("no digits") is None


@pytest.mark.parametrize("content, needle", [
    ("", "holds no examples"),
    ('{"prompt": "x"}\n', ":1: each line needs the fields 'prompt' and 'answer'"),
    ('{"prompt": "x", "answer": "1"}\n{not json\n', ":2: not valid JSON"),
    ('{"prompt": "x", "answer": "no number"}\n', ":1: no number in the answer"),
])
def test_bad_jsonl_names_file_and_line(tmp_path, content, needle):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(TaskFileError) as err:
        load_task(f"jsonl:{path}")
    assert str(path) in str(err.value) and needle in str(err.value)


def test_missing_jsonl_file(tmp_path):
    with pytest.raises(TaskFileError, match=r"--task .*: no such file"):
        load_task(f"jsonl:{tmp_path / 'absent.jsonl'}")


@pytest.mark.parametrize("task, kwargs, needed", [
    (ChoiceTask, {"slots": 9}, 18), (PairSumTask, {"pairs": 9}, 18),
    (ProgramTask, {"max_statements": 8}, 18), (RunningSumTask, {"max_terms": 15}, 17),
])
def test_a_response_too_short_for_the_longest_answer_is_refused(task, kwargs, needed):
    with pytest.raises(ValueError, match=f"response_len 16 cannot hold .*use response_len >= {needed}"):
        task(**kwargs)
