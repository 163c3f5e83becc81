"""Self-distilled training data: a model's own decodes of a task's training prompts (DMax's dataset builder).

`workbench distill` calls `distill`; `workbench train --data FILE` reads the result (`data_record` puts what it
was into the trained model's `training.json` and card). Three files, all in the folder of `out`:

- `out` (e.g. `data.jsonl`): one `{"prompt", "answer"}` object per kept decode, the format of `jsonl:` tasks;
- `<stem>.rejected.jsonl`: the decodes the task checked as wrong (only when filtering by correctness);
- `<stem>.meta.json`: where the data comes from (model path and checkpoint hash, strategy and parameters,
  task, prompt seed, counts kept / decoded, whether outputs were filtered by correctness).

Prompts are the first `count` distinct prompts of `task.train_stream(seed)`, so they never include a held-out
evaluation prompt, and a larger `count` extends a smaller run's set. Every decoded prompt lands in exactly one
of the two JSONL files, appended batch by batch and flushed to disk, so a killed run loses at most the batch in
flight: rerunning the same command skips every prompt already written.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import workbench
from workbench.decoding.limits import check_lengths, preview
from workbench.decoding.loop import generate
from workbench.models.tokenizer import decode, encode
from workbench.results.provenance import sha256_file


class DistillError(ValueError):
    """Data at `out` written by another configuration, or a count the task cannot supply."""


def meta_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".meta.json")


def rejected_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".rejected.jsonl")


def data_record(path: str | Path | None) -> dict | None:
    """What `workbench train --data` records about its data: path, sha256 of the file, and the sidecar metadata
    (None when the file has no sidecar, e.g. hand-written data). None for no data."""
    if path is None:
        return None
    meta = meta_path(path)
    return {"path": str(path), "sha256": sha256_file(path),
            "meta": json.loads(meta.read_text()) if meta.is_file() else None}


def unique_prompts(task, seed: int, count: int) -> Iterator:
    """The first `count` examples of `task.train_stream(seed)` with distinct prompts."""
    seen: set[str] = set()
    misses = 0
    for example in task.train_stream(seed):
        if example.prompt in seen:
            misses += 1
            # A prompt space smaller than `count` would loop for ever; 100 repeats per new prompt is far past
            # what a large space gives (the chance of a repeat stays below count / space).
            if misses > 100 * max(count, 100):
                raise DistillError(f"task {task.name!r} offered only {len(seen)} distinct training prompts; "
                                   f"ask for --count {len(seen)} or fewer")
            continue
        seen.add(example.prompt)
        yield example
        if len(seen) == count:
            return


def _read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSONL file written by `distill`; a last line cut by a kill is dropped from the file too."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):  # the unfinished last line of a killed run: cut it off (re-decoded)
        data = data[:data.rfind(b"\n") + 1]
        with open(path, "r+b") as f:
            f.truncate(len(data))
    rows = []
    for lineno, line in enumerate(data.splitlines(), start=1):
        try:
            rows.append(json.loads(line))
        except (json.JSONDecodeError, RecursionError):  # RecursionError: nested deeper than the parser goes
            raise DistillError(f"{path}:{lineno}: not JSON; not a file `workbench distill` wrote") from None
    return rows


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """An OSError while writing `path` carries its name: a write or fsync that fails (a full disk) says no
    file of its own, and the one-line error must say which file to make room for."""
    try:
        yield
    except OSError as err:
        if err.filename is None:
            raise OSError(err.errno, err.strerror or str(err), str(path)) from err
        raise


def _append(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    with _naming(path), open(path, "a", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
        f.flush()
        os.fsync(f.fileno())  # the batch is on disk before the next one is decoded


def _write_meta(path: Path, meta: dict) -> None:
    tmp = path.with_suffix(".tmp")
    with _naming(tmp):
        tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, path)  # atomic: never a half-written sidecar


# Sidecar fields that identify the data: a rerun with other values would mix two kinds of decodes in one file.
IDENTITY = ("model_hash", "strategy", "params", "plugins", "decisions", "task", "seed", "decode", "precision",
            "filtered_by_correctness")


def distill(model, tokenizer, task, manager, decode_config, out: str | Path, *, count: int, seed: int,
            source: dict, keep_correct_only: bool = True, batch_size: int = 128,
            on_batch: Callable[[int, int], None] | None = None) -> dict:
    """Decode the first `count` distinct training prompts of `task` not yet written to `out`; returns the
    sidecar metadata (also written to `meta_path(out)` after every batch).

    `source` names what decodes: model path and hash, strategy, params, plugins, decisions, decode config and
    precision (the caller knows them); they go into the sidecar and must match an existing one.
    `on_batch(kept, decoded)` is called with the totals after every batch (for a progress bar). A second
    process distilling into the same `out` is refused (`OutputBusy`) rather than duplicating its lines.
    """
    from workbench.runtime.outputs import exclusive_output

    with exclusive_output(out, "distill"):
        return _distill(model, tokenizer, task, manager, decode_config, Path(out), count=count, seed=seed,
                        source=source, keep_correct_only=keep_correct_only, batch_size=batch_size,
                        on_batch=on_batch)


def _distill(model, tokenizer, task, manager, decode_config, out: Path, *, count, seed, source, keep_correct_only,
             batch_size, on_batch) -> dict:
    out.parent.mkdir(parents=True, exist_ok=True)
    meta_file, rejected_file = meta_path(out), rejected_path(out)
    identity = {**source, "task": task.name, "seed": seed, "filtered_by_correctness": keep_correct_only}
    if meta_file.is_file():
        old = json.loads(meta_file.read_text())
        differ = [k for k in IDENTITY if old.get(k) != identity.get(k)]
        if differ:
            raise DistillError(f"{out} was distilled with another {differ[0]} ({old.get(differ[0])!r}, now "
                               f"{identity.get(differ[0])!r}); use another --out or delete {out} and {meta_file}")
    elif out.exists() or rejected_file.exists():
        raise DistillError(f"{out} exists without {meta_file.name}: not data `workbench distill` wrote; "
                           f"use another --out")
    kept, rejected = _read_jsonl(out), _read_jsonl(rejected_file)
    done = {r["prompt"] for r in kept} | {r["prompt"] for r in rejected}
    n_kept, n_decoded = len(kept), len(kept) + len(rejected)
    meta = {**identity, "count": count, "kept": n_kept, "decoded": n_decoded, "data": out.name,
            "rejected": rejected_file.name if keep_correct_only else None, "version": workbench.__version__}
    _write_meta(meta_file, meta)
    todo = [ex for ex in unique_prompts(task, seed, count) if ex.prompt not in done]
    # Every prompt checked before the first decode: a huge one fails here, named, not in an allocation.
    check_lengths(model, [encode(tokenizer, ex.prompt) for ex in todo], decode_config.max_new_tokens,
                  names=[f"training prompt {preview(ex.prompt)}" for ex in todo])
    if on_batch:
        on_batch(n_kept, n_decoded)
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        results = generate(model, [encode(tokenizer, ex.prompt) for ex in batch], manager, decode_config)
        good, bad = [], []
        for ex, res in zip(batch, results):
            output = decode(tokenizer, res.ids)
            correct = bool(task.check(ex, output))
            row = {"prompt": ex.prompt, "answer": output}
            (good if correct or not keep_correct_only else bad).append(row)
        _append(out, good)
        _append(rejected_file, bad)
        n_kept += len(good)
        n_decoded += len(batch)
        meta.update(kept=n_kept, decoded=n_decoded)
        _write_meta(meta_file, meta)
        if on_batch:
            on_batch(n_kept, n_decoded)
    if not out.exists():  # every decode rejected: still leave the (empty) data file the sidecar names
        out.touch()
    return meta
