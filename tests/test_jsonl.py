"""JSONL task files (issue 15, item 11): lines end at "\\n" only, prompts must be strings, answers strings or
numbers, and a file that is not UTF-8 is refused naming the file and the line."""

from __future__ import annotations

import json

import pytest

from workbench.cli import main as cli
from workbench.tasks import load_task
from workbench.tasks.jsonl import TaskFileError


def write(path, *rows) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return f"jsonl:{path}"


def test_unicode_line_separators_inside_strings_are_text(tmp_path):
    prompt = "first\u2028second\u2029third\x85fourth\x0cfifth"
    task = load_task(write(tmp_path / "t.jsonl", {"prompt": prompt, "answer": "#### 7"}, {"prompt": "b", "answer": 8}))
    assert [e.prompt for e in task.examples] == [prompt, "b"]
    assert [e.final for e in task.examples] == ["7", "8"]  # a numeric answer is read as its number


def test_crlf_line_ends_and_a_byte_order_mark_are_accepted(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"prompt": "a", "answer": "1"}\r\n{"prompt": "b", "answer": "2"}\r\n')
    assert [e.prompt for e in load_task(f"jsonl:{path}").examples] == ["a", "b"]


@pytest.mark.parametrize("row, needle", [
    ({"prompt": None, "answer": "1"}, "'prompt' must be a string, got null"),
    ({"prompt": ["a", "b"], "answer": "1"}, "'prompt' must be a string, got a list"),
    ({"prompt": 12, "answer": "1"}, "'prompt' must be a string, got a number"),
    ({"prompt": "a", "answer": None}, "'answer' must be a string or a number, got null"),
    ({"prompt": "a", "answer": True}, "'answer' must be a string or a number, got a boolean"),
    ({"prompt": "a", "answer": {"value": 1}}, "'answer' must be a string or a number, got an object"),
])
def test_wrong_types_are_refused_not_coerced(row, needle, tmp_path):
    with pytest.raises(TaskFileError) as err:
        load_task(write(tmp_path / "t.jsonl", {"prompt": "ok", "answer": "1"}, row))
    assert str(err.value) == f"{tmp_path / 't.jsonl'}:2: {needle}"


def test_a_file_that_is_not_utf8_is_named_with_its_line(tmp_path, capsys):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"prompt": "a", "answer": "1"}\n{"prompt": "café", "answer": "2"}\n'.encode("latin-1"))
    with pytest.raises(TaskFileError, match=r"latin1\.jsonl:2: not UTF-8 text \(byte 0xe9"):
        load_task(f"jsonl:{path}")
    assert cli(["run", "--task", f"jsonl:{path}", "--limit", "1", "--store", str(tmp_path / "r.db")]) == 2
    err = capsys.readouterr().err.strip()
    assert str(path) in err and "UTF-8" in err and len(err.splitlines()) == 1
