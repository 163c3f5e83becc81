"""User data: `--task jsonl:PATH` with one `{"prompt": ..., "answer": ...}` object per line.

Answers are checked GSM8K-style by default (the number after the last `####` if present, else the last
number in the text, commas removed), or by exact match of the stripped text (`jsonl:PATH?match=exact`).
A malformed file is rejected as a whole, naming the file and line, before anything runs: text that is not
UTF-8, a line that is not a JSON object, a prompt that is not a string, an answer that is not a string or a
number. Lines end at "\n" only (JSON Lines), so U+2028 and other Unicode line separators inside a string
are text, as JSON says.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Iterator

from workbench.tasks.base import Example

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


class TaskFileError(ValueError):
    """A task file that cannot be used; the message names the file and the line."""


def extract_number(text: str) -> str | None:
    """GSM8K-style numeric answer: after the last '####' if any, else the last number; commas dropped."""
    if "####" in text:
        text = text.rsplit("####", 1)[1]
    found = _NUMBER.findall(text)
    if not found:
        return None
    value = found[-1].replace(",", "")
    # 72.0 and 72 are the same answer.
    if "." in value:
        value = value.rstrip("0").rstrip(".")
    return value


def _json_type(value) -> str:
    """The JSON name of a parsed value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {str: "a string", int: "a number", float: "a number", list: "a list", dict: "an object"}.get(
        type(value), type(value).__name__)


class JsonlTask:
    def __init__(self, path: str | Path, *, match: str = "number", response_len: int = 256,
                 option: str = "--task jsonl:PATH"):
        """`option`: how the user named the file (`--task jsonl:PATH`, `--data FILE.jsonl`), for messages."""
        self.option = option
        if match not in ("number", "exact"):
            raise TaskFileError(f"unknown match mode {match!r}: use ?match=number or ?match=exact")
        self.path = Path(path)
        self.match = match
        self.response_len = response_len
        self.name = f"jsonl:{self.path.name}"
        self.examples = self._load()

    def _load(self) -> list[Example]:
        if not self.path.is_file():
            raise TaskFileError(f"{self.option.split()[0]} {self.path}: no such file (give {self.option} to a JSONL "
                                f"file)")
        examples = []
        for lineno, line in enumerate(self._text().split("\n"), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise TaskFileError(f"{self.path}:{lineno}: not valid JSON ({err.msg})") from None
            except RecursionError:  # Python's parser recurses once per nesting level
                raise TaskFileError(f"{self.path}:{lineno}: JSON nested too deeply to read; each line is one "
                                    f"object with 'prompt' and 'answer'") from None
            if not isinstance(row, dict) or "prompt" not in row or "answer" not in row:
                raise TaskFileError(f"{self.path}:{lineno}: each line needs the fields 'prompt' and 'answer'")
            if not isinstance(row["prompt"], str):
                raise TaskFileError(f"{self.path}:{lineno}: 'prompt' must be a string, got {_json_type(row['prompt'])}")
            if isinstance(row["answer"], bool) or not isinstance(row["answer"], (str, int, float)):
                raise TaskFileError(f"{self.path}:{lineno}: 'answer' must be a string or a number, got "
                                    f"{_json_type(row['answer'])}")
            answer = str(row["answer"])
            final = answer.strip() if self.match == "exact" else extract_number(answer)
            if final is None:
                raise TaskFileError(f"{self.path}:{lineno}: no number in the answer; use ?match=exact for text")
            examples.append(Example(str(row["prompt"]), answer, final, uid=len(examples)))
        if not examples:
            raise TaskFileError(f"{self.path}: the file holds no examples")
        return examples

    def _text(self) -> str:
        data = self.path.read_bytes()
        self.sha256 = hashlib.sha256(data).hexdigest()  # of exactly the bytes the examples come from
        try:
            return data.decode("utf-8-sig")  # a leading byte-order mark is not part of the first line
        except UnicodeDecodeError as err:
            line = data[: err.start].count(b"\n") + 1
            raise TaskFileError(f"{self.path}:{line}: not UTF-8 text (byte {data[err.start]:#04x} at offset "
                                f"{err.start}); save the file as UTF-8") from None

    def identity(self) -> dict:
        """The file's sha256 (of the bytes the examples were read from) and how answers are checked: an edited
        file is another task for the results store."""
        return {"class": "jsonl", "file": self.path.name, "sha256": self.sha256, "match": self.match,
                "response_len": self.response_len}

    def train_stream(self, seed: int) -> Iterator[Example]:
        import random

        rng = random.Random(seed)
        while True:
            yield self.examples[rng.randrange(len(self.examples))]

    def eval_split(self, n: int) -> list[Example]:
        return self.examples[:n]

    def check(self, example: Example, output: str) -> bool:
        if self.match == "exact":
            return output.strip() == example.final
        return extract_number(output) == example.final
