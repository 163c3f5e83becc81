"""The results store: every run (one ablation cell) and every sample it decoded, in one SQLite file.

A run is keyed by `config_key(config)`, the sha256 of the canonical JSON of its *full* configuration
(strategy + parameters, plugins + versions, checkpoint hash, task + split, seed, package version, decode
config). Change any field and it is a different run; rerun the same configuration and the store hands back the
samples already decoded, so an interrupted ablation resumes where it stopped:

    with ResultsStore("results.sqlite") as store:
        key = store.ensure_run(config)
        done = store.done_samples(key)
        for i, example in enumerate(examples):
            if i in done:
                continue
            store.add_sample(key, decode(example))     # committed before the next sample starts
        store.mark_complete(key)

Durability: the database runs in WAL mode and every `add_sample` is its own committed transaction with
`synchronous=FULL`, so a `kill -9` (or a power cut) between samples loses nothing already added.

Safety: the store never modifies a file it did not create. A file that is not SQLite, a SQLite database
without our `application_id` / schema version / tables / columns, or a store that fails SQLite's
`PRAGMA quick_check` (a damaged page) raises `StoreError` before anything is written.

Reading: `ResultsStore(path, readonly=True)` (what `workbench report` and `plot` open) never writes: it opens
the file with SQLite's `mode=ro`, or as `immutable` when no writer's log (`-wal`) is beside it, so a store on
read-only media or in a folder the user cannot write reads the same. Writing errors (a full or read-only disk)
raise `StoreError` saying which file and what to do; samples stored before stay stored.

Two processes decoding the same run at once are kept apart by `workbench.results.runlock` (the caller claims a run
before decoding it), not by the store.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import sqlite3
import warnings
from datetime import datetime, timezone
from os import PathLike
from pathlib import Path
from typing import Any

import attrs

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "ResultsStore",
    "RunRecord",
    "SampleRecord",
    "StoreError",
    "checkpoint_hash",
    "config_key",
]

# PRAGMA application_id marks the file as ours (bytes 68..71 of the SQLite header): ASCII "dLWB".
APPLICATION_ID = 0x644C5742
# PRAGMA user_version: bump when the schema changes; an old/new store is refused, never migrated silently.
SCHEMA_VERSION = 1
_SQLITE_MAGIC = b"SQLite format 3\x00"
_TABLES = {"runs", "samples"}

_SCHEMA = """
CREATE TABLE runs (
    key          TEXT PRIMARY KEY,        -- config_key(config): sha256 hex of the canonical config JSON
    config_json  TEXT NOT NULL,           -- canonical JSON of the full configuration
    created      TEXT NOT NULL,           -- ISO 8601 UTC
    completed    TEXT                     -- ISO 8601 UTC once mark_complete() ran, else NULL
);
CREATE TABLE samples (
    run_key      TEXT NOT NULL REFERENCES runs(key),
    idx          INTEGER NOT NULL,        -- position of the example in the task's evaluation set
    prompt_id    TEXT,                    -- the task's own id for the example, when it has one
    prompt       TEXT NOT NULL,
    output       TEXT NOT NULL,
    expected     TEXT,
    correct      INTEGER NOT NULL CHECK (correct IN (0, 1)),
    nfe          INTEGER NOT NULL,
    tokens       INTEGER NOT NULL,
    seconds      REAL NOT NULL,
    extras_json  TEXT,                    -- optional JSON object, e.g. {"revisions": 3, "fixed": true}
    PRIMARY KEY (run_key, idx)
) WITHOUT ROWID;
"""


class StoreError(Exception):
    """The results store cannot be opened or used as asked; the message says which file and what to do."""


@functools.cache
def _expected_columns() -> dict[str, list[str]]:
    """Column names per table, read from `_SCHEMA` itself so the check cannot drift from what we create."""
    mem = sqlite3.connect(":memory:")
    try:
        mem.executescript(_SCHEMA)
        return {t: [r[1] for r in mem.execute(f"PRAGMA table_info({t})")] for t in sorted(_TABLES)}
    finally:
        mem.close()


def _canonical_json(obj: Any) -> str:
    # sort_keys + fixed separators: the same dict always gives the same bytes, whatever its insertion order.
    # allow_nan=False: NaN has no JSON spelling and NaN != NaN would make equal configs unequal.
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"configuration is not plain JSON data (dict/list/str/int/float/bool/None): {exc}") from exc


def config_key(config: dict) -> str:
    """Stable key of a run: sha256 hex of the canonical JSON of `config`.

    Independent of dict key order; any change to any field (at any depth) changes the key. Types matter:
    `1` and `1.0` are different values, so build configs from typed (attrs) objects, not from raw CLI strings.
    Tuples serialise as lists.
    """
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    return hashlib.sha256(_canonical_json(config).encode("utf-8")).hexdigest()


def _write_refused(exc: sqlite3.Error) -> bool:
    """Whether SQLite refused a write for a reason outside the store: disk full, read-only, lock held."""
    text = str(exc).lower()
    return any(word in text for word in ("full", "readonly", "read-only", "unable to open", "locked", "busy",
                                         "disk i/o"))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _nonneg(instance, attribute, value) -> None:
    if isinstance(value, bool) or value < 0 or (isinstance(value, float) and math.isnan(value)):
        raise ValueError(f"{attribute.name} must be a non-negative number, got {value!r}")


def _json_object(instance, attribute, value) -> None:
    if not isinstance(value, dict):
        raise TypeError(f"{attribute.name} must be a dict, got {type(value).__name__}")
    _canonical_json(value)  # fail at construction, not at insertion, if it cannot be stored


@attrs.frozen(kw_only=True)
class SampleRecord:
    """One decoded example of one run."""

    index: int = attrs.field(validator=[attrs.validators.instance_of(int), _nonneg])
    prompt: str = attrs.field(validator=attrs.validators.instance_of(str))
    output: str = attrs.field(validator=attrs.validators.instance_of(str))
    expected: str | None = attrs.field(validator=attrs.validators.optional(attrs.validators.instance_of(str)))
    correct: bool = attrs.field(validator=attrs.validators.instance_of(bool))
    nfe: int = attrs.field(validator=[attrs.validators.instance_of(int), _nonneg])  # forwards, prefill included
    tokens: int = attrs.field(validator=[attrs.validators.instance_of(int), _nonneg])  # generated, EOS excluded
    seconds: float = attrs.field(converter=float, validator=_nonneg)  # wall time of generation, prefill included
    prompt_id: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(str))
    )
    extras: dict = attrs.field(factory=dict, validator=_json_object, hash=False)


@attrs.frozen(kw_only=True)
class RunRecord:
    """One run (ablation cell) as recorded in the store."""

    key: str
    config: dict = attrs.field(hash=False)
    created: str
    completed: str | None
    n_samples: int

    @property
    def is_complete(self) -> bool:
        return self.completed is not None


class ResultsStore:
    """A SQLite results store at `path`; created if missing, refused (StoreError) if it is anything else.

    `readonly=True` opens an existing store for reading only (see the module docstring); nothing is created.
    Use as a context manager or call `close()`. One instance per thread (sqlite3 connections are not shared).
    """

    def __init__(self, path: str | PathLike[str], *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._conn: sqlite3.Connection | None = None
        self._check_file_before_open()
        if readonly:
            self._conn = self._open_readonly()
            return
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        try:
            if fresh:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: autocommit; every write below is its own transaction unless BEGIN is explicit.
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{self.path}: cannot open the results store ({exc}); check the path and permissions") from exc
        try:
            self._init_or_verify(conn, fresh)
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = FULL")
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    # --- opening -------------------------------------------------------------------------------------------

    def _refuse(self, what: str) -> StoreError:
        return StoreError(
            f"{self.path} {what}; it was left untouched. Pass a new path for the results store "
            f"(or move that file away)."
        )

    def _check_file_before_open(self) -> None:
        # Look at the raw header ourselves first: sqlite3 would only fail at the first query, and we want
        # a clear message and the guarantee that nothing is written to a foreign file.
        if not self.path.exists():
            if self.readonly:
                raise StoreError(f"results store {self.path} does not exist; run `workbench ablate` or "
                                 f"`workbench run` first")
            return
        if not self.path.is_file():
            raise self._refuse("exists but is not a regular file")
        try:
            with open(self.path, "rb") as f:
                head = f.read(len(_SQLITE_MAGIC))
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot read the results store ({exc}); check permissions") from exc
        if head and head != _SQLITE_MAGIC:
            raise self._refuse("is not a SQLite database (not a workbench results store)")
        if not head and self.readonly:
            raise StoreError(f"results store {self.path} is empty; run `workbench ablate` or `workbench run` first")

    def _open_readonly(self) -> sqlite3.Connection:
        """A connection that cannot write. With a writer's log beside the file (a run in progress, or killed)
        SQLite's `mode=ro` reads it too; otherwise `immutable=1` needs neither locks nor -shm/-wal files, so
        a read-only folder or medium works and nothing appears beside the store."""
        uri = self.path.resolve().as_uri()
        wal = Path(f"{self.path}-wal")
        conn = None
        if wal.is_file() and wal.stat().st_size > 0:
            try:
                conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30.0, isolation_level=None)
                conn.execute("PRAGMA application_id").fetchone()
            except sqlite3.Error:
                if conn is not None:
                    conn.close()
                conn = None
                warnings.warn(f"{wal} (samples a writer has not yet merged into {self.path.name}) cannot be read "
                              f"from here; showing the store without them", stacklevel=3)
        if conn is None:
            conn = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None)
        try:
            self._verify(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise self._refuse(f"is damaged or not a results store (SQLite: {exc})") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _verify(self, conn: sqlite3.Connection) -> None:
        """Refuse (StoreError) anything but an intact store of this schema. Reads only."""
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if app_id != APPLICATION_ID:
            raise self._refuse(
                f"is a SQLite database of another application (application_id {app_id:#x}, "
                f"expected {APPLICATION_ID:#x})"
            )
        if version != SCHEMA_VERSION:
            raise self._refuse(
                f"is a workbench results store with schema version {version}; this workbench reads "
                f"version {SCHEMA_VERSION}. Use the workbench version that wrote it, or a new path"
            )
        if not _TABLES <= tables:
            raise self._refuse(f"has the workbench marker but lacks the tables {sorted(_TABLES - tables)}")
        for table, expected in _expected_columns().items():
            found = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            if sorted(found) != sorted(expected):
                raise self._refuse(
                    f"has the workbench marker but its {table!r} table has the columns {', '.join(found)} "
                    f"instead of {', '.join(expected)}, so it was not written by this workbench"
                )
        # quick_check reads every page once (milliseconds for thousands of samples) and finds damaged pages,
        # which would otherwise surface as a DatabaseError in the middle of a report or a run.
        problems = [r[0] for r in conn.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            found = "; ".join(line for p in problems for line in p.splitlines() if not line.startswith("***"))
            raise StoreError(
                f"{self.path} is damaged (SQLite quick_check: {found[:300]}); it was left untouched. "
                f"Restore it from a copy, or pass a new path for the results store and decode again "
                f"(`sqlite3 {self.path} .recover` may save the readable samples)"
            )

    def _init_or_verify(self, conn: sqlite3.Connection, fresh: bool) -> None:
        try:
            # IMMEDIATE: take the write lock before looking, so two processes creating the same new store
            # cannot both initialise it; a process that finds it initialised just verifies it.
            conn.execute("BEGIN IMMEDIATE")
            try:
                app_id = conn.execute("PRAGMA application_id").fetchone()[0]
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                created_here = False
                if fresh and app_id == 0 and not tables:
                    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    created_here = True
                else:
                    self._verify(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            if created_here:
                # WAL after the schema commit: the mode cannot change inside a transaction, and a crash before
                # this point leaves a complete (rollback-journal) store that the next open switches to WAL.
                conn.execute("PRAGMA journal_mode = WAL")
            elif conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:
            if _write_refused(exc):
                raise self._write_error(exc) from exc
            raise self._refuse(f"cannot be read as a results store ({exc})") from exc
        except sqlite3.DatabaseError as exc:
            raise self._refuse(f"is damaged or not a results store (SQLite: {exc})") from exc

    def _write_error(self, exc: sqlite3.Error) -> StoreError:
        """A one-line StoreError for a write SQLite refused: full disk, read-only file or folder, lock held."""
        text = str(exc)
        if "full" in text:
            return StoreError(f"{self.path}: the disk is full ({text}); the samples stored before are kept. Free "
                              f"some space and rerun the same command to continue")
        if "locked" in text or "busy" in text:
            return StoreError(f"{self.path}: another process has held the store's write lock for 30 s ({text}); "
                              f"wait for it or use another --store")
        return StoreError(f"{self.path} cannot be written here ({text}): read-only file, folder or disk. "
                          f"`workbench report` reads it as it is; to decode, pass --store on a writable disk "
                          f"(a copy of this file keeps its samples)")

    def _write(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        if self.readonly:
            raise StoreError(f"{self.path} was opened read-only (ResultsStore(path, readonly=True)); open it "
                             f"without readonly to add runs or samples")
        try:
            return self._db.execute(sql, params)
        except sqlite3.OperationalError as exc:
            if _write_refused(exc):
                raise self._write_error(exc) from exc
            raise

    # --- context manager -----------------------------------------------------------------------------------

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self.path}: the results store is closed")
        return self._conn

    # --- runs ----------------------------------------------------------------------------------------------

    def ensure_run(self, config: dict) -> str:
        """Record the run for `config` if it is new; return its key either way (an existing run is untouched)."""
        key = config_key(config)
        self._write(
            "INSERT OR IGNORE INTO runs (key, config_json, created) VALUES (?, ?, ?)",
            (key, _canonical_json(config), _now()),
        )
        return key

    def mark_complete(self, key: str) -> None:
        """Record that every sample of run `key` is in (keeps the first completion time)."""
        cur = self._write("UPDATE runs SET completed = COALESCE(completed, ?) WHERE key = ?", (_now(), key))
        if cur.rowcount == 0:
            raise StoreError(f"{self.path}: no run with key {key}; call ensure_run(config) first")

    def runs(self) -> list[RunRecord]:
        """All runs, oldest first."""
        rows = self._db.execute(
            "SELECT r.key, r.config_json, r.created, r.completed, "
            "(SELECT COUNT(*) FROM samples s WHERE s.run_key = r.key) "
            "FROM runs r ORDER BY r.created, r.key"
        ).fetchall()
        return [
            RunRecord(key=k, config=json.loads(cfg), created=created, completed=completed, n_samples=n)
            for k, cfg, created, completed, n in rows
        ]

    # --- samples -------------------------------------------------------------------------------------------

    def done_samples(self, key: str) -> set[int]:
        """Indices of the samples of run `key` already stored (empty for a new or unknown run)."""
        return {r[0] for r in self._db.execute("SELECT idx FROM samples WHERE run_key = ?", (key,))}

    def add_sample(self, key: str, sample: SampleRecord) -> None:
        """Store one sample of run `key`, committed (durably) before returning."""
        if not isinstance(sample, SampleRecord):
            raise TypeError(f"sample must be a SampleRecord, got {type(sample).__name__}")
        extras = _canonical_json(sample.extras) if sample.extras else None
        try:
            self._write(
                "INSERT INTO samples (run_key, idx, prompt_id, prompt, output, expected, correct, nfe, tokens, "
                "seconds, extras_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, sample.index, sample.prompt_id, sample.prompt, sample.output, sample.expected,
                 int(sample.correct), sample.nfe, sample.tokens, sample.seconds, extras),
            )
        except sqlite3.IntegrityError as exc:
            if key not in {r.key for r in self.runs()}:
                raise StoreError(f"{self.path}: no run with key {key}; call ensure_run(config) first") from exc
            raise StoreError(
                f"{self.path}: sample {sample.index} of run {key[:12]} is already stored: another process wrote it "
                f"while this one decoded it, or the caller did not skip the samples in done_samples(key). Rerun "
                f"the command; it reuses what is stored"
            ) from exc

    def samples(self, key: str) -> list[SampleRecord]:
        """The samples of run `key`, ordered by index."""
        rows = self._db.execute(
            "SELECT idx, prompt_id, prompt, output, expected, correct, nfe, tokens, seconds, extras_json "
            "FROM samples WHERE run_key = ? ORDER BY idx",
            (key,),
        ).fetchall()
        return [
            SampleRecord(
                index=idx, prompt_id=pid, prompt=prompt, output=output, expected=expected, correct=bool(correct),
                nfe=nfe, tokens=tokens, seconds=seconds, extras=json.loads(extras) if extras else {},
            )
            for idx, pid, prompt, output, expected, correct, nfe, tokens, seconds, extras in rows
        ]


# What a checkpoint folder holds that cannot change the model's outputs: documentation, pictures, VCS and
# download caches, Python bytecode, and the workbench's own training-resume state. Everything else is hashed
# (deny-list, so a weight or tokenizer format met for the first time counts): weights of any format
# (*.safetensors, *.bin, *.pt, *.gguf...), configs, tokenizer files (tokenizer.json, vocab.txt, merges.txt,
# *.model), chat templates and remote-code *.py files.
_DOC_SUFFIXES = frozenset({".md", ".rst", ".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".pdf", ".pyc"})
_DOC_NAMES = ("readme", "license", "licence", "notice", "citation", "changelog", "model_card", "modelcard")
_SKIPPED_NAMES = frozenset({"checkpoint.pt", ".gitattributes", ".gitignore"})
_CHUNK = 1 << 20


def hashed_files(path: str | PathLike[str]) -> list[Path]:
    """The files of a model folder that `checkpoint_hash` covers, by relative name (see `_DOC_SUFFIXES`)."""
    root = Path(path)
    files = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if not p.is_file() or any(part.startswith(".") or part == "__pycache__" for part in rel.parts[:-1]):
            continue
        name = p.name.lower()
        if p.suffix.lower() in _DOC_SUFFIXES or name in _SKIPPED_NAMES or name.startswith(_DOC_NAMES):
            continue
        files.append(p)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def checkpoint_hash(path: str | PathLike[str]) -> str:
    """sha256 hex over the sorted relative names and contents of every file of a model folder (recursively)
    that can change what the model computes: weights of any format, configs, tokenizer files, remote-code
    Python files (`hashed_files`; READMEs, pictures and caches are left out). Each file contributes
    `name NUL size(8 bytes) content`, so no two folders collide by moving bytes between files."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a model folder")
    files = hashed_files(root)
    if not files:
        raise FileNotFoundError(f"{root}: no model files to hash (only documentation)")
    h = hashlib.sha256()
    for p in files:
        h.update(p.relative_to(root).as_posix().encode("utf-8") + b"\0")
        h.update(p.stat().st_size.to_bytes(8, "big"))
        with open(p, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    return h.hexdigest()
