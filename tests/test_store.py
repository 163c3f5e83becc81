"""Results store: round trip, stable keys, resume after SIGKILL, and refusal to touch foreign files."""

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.results.store import (
    APPLICATION_ID,
    ResultsStore,
    SampleRecord,
    StoreError,
    checkpoint_hash,
    config_key,
)

REPO = Path(__file__).resolve().parents[1]

CONFIG = {
    "strategy": {"name": "spd", "params": {"tau_dec": 0.5, "tau_acc": 0.9}},
    "plugins": [{"name": "tracer", "version": "0.1.0"}],
    "checkpoint": "ab" * 32,
    "task": {"name": "arith", "split": "test"},
    "seed": 0,
    "package_version": "0.1.0",
    "decode": {"block_length": 32, "max_new_tokens": 64},
}


def _sample(i, **kw):
    fields = dict(
        index=i, prompt=f"{i}+{i}=", output=str(2 * i), expected=str(2 * i), correct=True, nfe=3, tokens=5,
        seconds=0.25,
    )
    fields.update(kw)
    return SampleRecord(**fields)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- keys -----------------------------------------------------------------------------------------------------


def test_config_key_independent_of_key_order():
    shuffled = {k: CONFIG[k] for k in reversed(list(CONFIG))}
    shuffled["strategy"] = {"params": {"tau_acc": 0.9, "tau_dec": 0.5}, "name": "spd"}
    assert config_key(shuffled) == config_key(CONFIG)
    assert len(config_key(CONFIG)) == 64


def _leaf_paths(obj, prefix=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaf_paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaf_paths(v, prefix + (i,))
    else:
        yield prefix


def _changed(obj, path):
    import copy

    new = copy.deepcopy(obj)
    node = new
    for p in path[:-1]:
        node = node[p]
    old = node[path[-1]]
    node[path[-1]] = old + 1 if isinstance(old, (int, float)) else str(old) + "x"
    return new


def test_config_key_changes_with_every_field():
    base = config_key(CONFIG)
    paths = list(_leaf_paths(CONFIG))
    assert len(paths) >= 10
    keys = {config_key(_changed(CONFIG, p)) for p in paths}
    assert base not in keys and len(keys) == len(paths)
    assert config_key({**CONFIG, "extra": None}) != base  # an added field counts too


def test_config_key_rejects_non_json():
    with pytest.raises(TypeError):
        config_key({"x": object()})
    with pytest.raises(TypeError):
        config_key({"x": float("nan")})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.text(max_size=5), json_values, max_size=6))
def test_config_key_order_property(config):
    assert config_key(dict(reversed(list(config.items())))) == config_key(config)


# --- round trip and resume ------------------------------------------------------------------------------------


def test_round_trip(tmp_path):
    path = tmp_path / "sub" / "results.sqlite"  # parent folder is created
    samples = [
        _sample(0, extras={"revisions": 2, "fixed": True, "broke": False}),
        _sample(1, correct=False, prompt_id="gsm8k-17", expected=None, output="ünïcode ✓\n"),
    ]
    with ResultsStore(path) as store:
        key = store.ensure_run(CONFIG)
        assert key == config_key(CONFIG)
        for s in reversed(samples):
            store.add_sample(key, s)
        assert store.samples(key) == samples  # ordered by index
    with ResultsStore(path) as store:
        assert store.samples(key) == samples
        (run,) = store.runs()
        assert run.key == key and run.config == CONFIG and run.n_samples == 2 and not run.is_complete
        store.mark_complete(key)
        assert store.runs()[0].is_complete
        assert store.samples("no-such-key") == [] and store.done_samples("no-such-key") == set()


def test_ensure_run_is_idempotent(tmp_path):
    with ResultsStore(tmp_path / "r.sqlite") as store:
        k1 = store.ensure_run(CONFIG)
        created = store.runs()[0].created
        k2 = store.ensure_run(dict(reversed(list(CONFIG.items()))))
        other = store.ensure_run({**CONFIG, "seed": 1})
        assert k1 == k2 != other
        assert [r.key for r in store.runs()].count(k1) == 1
        assert next(r for r in store.runs() if r.key == k1).created == created


def test_resume_semantics(tmp_path):
    path = tmp_path / "r.sqlite"
    with ResultsStore(path) as store:
        key = store.ensure_run(CONFIG)
        for i in (0, 1, 3):
            store.add_sample(key, _sample(i))
        assert store.done_samples(key) == {0, 1, 3}
    with ResultsStore(path) as store:
        key = store.ensure_run(CONFIG)  # a rerun of the same config finds its samples
        assert store.done_samples(key) == {0, 1, 3}
        with pytest.raises(StoreError, match="already stored"):
            store.add_sample(key, _sample(1))
        store.add_sample(key, _sample(2))
        assert [s.index for s in store.samples(key)] == [0, 1, 2, 3]


def test_unknown_run_and_closed_store(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    with pytest.raises(StoreError, match="ensure_run"):
        store.add_sample("f" * 64, _sample(0))
    with pytest.raises(StoreError, match="ensure_run"):
        store.mark_complete("f" * 64)
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.runs()


def test_sample_record_validation():
    with pytest.raises(ValueError):
        _sample(-1)
    with pytest.raises(TypeError):
        _sample(0, correct=1)
    with pytest.raises(TypeError):
        _sample(0, extras={"x": object()})


_WRITER = textwrap.dedent(
    """
    import sys, time
    from workbench.results.store import ResultsStore, SampleRecord
    store = ResultsStore(sys.argv[1])
    key = store.ensure_run({"cell": "killed"})
    for i in range(3):
        store.add_sample(key, SampleRecord(index=i, prompt="p", output="o", expected="o", correct=True,
                                           nfe=1, tokens=1, seconds=0.1))
    print("written", flush=True)
    time.sleep(60)
    """
)


def test_samples_survive_sigkill(tmp_path):
    path = tmp_path / "killed.sqlite"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        text=True,
    ) as proc:
        try:
            line = proc.stdout.readline()
            assert line.strip() == "written", proc.stderr.read()
        finally:
            proc.send_signal(signal.SIGKILL)  # no close(), no checkpoint: the samples live only in the WAL
            proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    with ResultsStore(path) as store:
        key = config_key({"cell": "killed"})
        assert store.done_samples(key) == {0, 1, 2}
        assert len(store.samples(key)) == 3


# --- refusing foreign files -----------------------------------------------------------------------------------


def _assert_refused_untouched(path: Path):
    before = _digest(path)
    siblings = set(path.parent.iterdir())
    with pytest.raises(StoreError) as err:
        ResultsStore(path)
    assert str(path) in str(err.value) and "new path" in str(err.value)
    assert _digest(path) == before
    assert set(path.parent.iterdir()) == siblings  # no journal, -wal or -shm left beside it either


def test_random_bytes_file_is_refused_and_unchanged(tmp_path):
    path = tmp_path / "results.sqlite"
    path.write_bytes(os.urandom(4096))
    _assert_refused_untouched(path)


def test_corrupt_sqlite_file_is_refused_and_unchanged(tmp_path):
    path = tmp_path / "results.sqlite"
    path.write_bytes(b"SQLite format 3\x00" + os.urandom(4080))
    _assert_refused_untouched(path)


def test_foreign_sqlite_db_is_refused_and_unchanged(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO runs (name) VALUES ('theirs')")
    conn.commit()
    conn.close()
    _assert_refused_untouched(path)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT name FROM runs").fetchall() == [("theirs",)]
    conn.close()


def test_empty_foreign_sqlite_db_is_refused(tmp_path):
    path = tmp_path / "empty.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 7")  # a valid, non-empty SQLite file with no tables
    conn.close()
    _assert_refused_untouched(path)


def test_other_schema_version_is_refused(tmp_path):
    path = tmp_path / "r.sqlite"
    with ResultsStore(path) as store:
        store.ensure_run(CONFIG)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    conn.execute("PRAGMA user_version = 99")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    with pytest.raises(StoreError, match="schema version 99"):
        ResultsStore(path)


def test_zero_byte_file_becomes_a_store(tmp_path):
    path = tmp_path / "touched.sqlite"
    path.touch()
    with ResultsStore(path) as store:
        assert store.runs() == []


def test_directory_is_refused(tmp_path):
    with pytest.raises(StoreError, match="not a regular file"):
        ResultsStore(tmp_path)


# --- checkpoint hash ------------------------------------------------------------------------------------------


def test_checkpoint_hash(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"hidden": 8}')
    (model / "model.safetensors").write_bytes(b"\x00weights")
    h = checkpoint_hash(model)
    assert h == checkpoint_hash(model) and len(h) == 64
    (model / "README.md").write_text("not part of the model")
    assert checkpoint_hash(model) == h
    (model / "model.safetensors").write_bytes(b"\x01weights")
    assert checkpoint_hash(model) != h
    (model / "model.safetensors").write_bytes(b"\x00weights")
    assert checkpoint_hash(model) == h
    (model / "config.json").rename(model / "config2.json")
    assert checkpoint_hash(model) != h
    with pytest.raises(FileNotFoundError):
        checkpoint_hash(tmp_path / "missing")


# --- damaged, read-only and full stores (issue 15, items 5, 6, 8 and 17) --------------------------------------


def _filled_store(path: Path, n: int = 300) -> str:
    with ResultsStore(path) as store:
        key = store.ensure_run(CONFIG)
        for i in range(n):
            store.add_sample(key, _sample(i, prompt="p" * 50 + str(i), output="o" * 40))
    return key


def _damage_a_middle_page(path: Path) -> None:
    """Overwrite the cell pointers of a b-tree page in the middle of the file: the header, the schema and the
    first pages stay intact, so the file opens as before and fails only where that page is read."""
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    n = len(data) // page
    for p in range(n // 2, n):
        if data[p * page] in (0x0A, 0x0D):  # index or table leaf page
            data[p * page + 8 : p * page + 40] = b"\xff" * 32
            break
    path.write_bytes(bytes(data))


def test_damaged_page_is_refused_before_anything_is_written(tmp_path, capsys):
    from workbench.cli import main as cli

    path = tmp_path / "damaged.sqlite"
    _filled_store(path)
    _damage_a_middle_page(path)
    _assert_refused_untouched(path)
    with pytest.raises(StoreError, match="is damaged"):
        ResultsStore(path, readonly=True)
    before = _digest(path)
    assert cli(["report", "--store", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "damaged" in err and str(path) in err and len(err.splitlines()) == 1
    assert _digest(path) == before and sorted(os.listdir(tmp_path)) == ["damaged.sqlite"]


def _store_with_other_columns(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.execute("CREATE TABLE runs (key TEXT PRIMARY KEY, payload TEXT)")
    conn.execute("CREATE TABLE samples (run_key TEXT, idx INTEGER, blob BLOB)")
    conn.execute("INSERT INTO runs VALUES ('k', '{}')")
    conn.commit()
    conn.close()


def test_marker_with_other_columns_is_refused_untouched(tmp_path, capsys):
    from workbench.cli import main as cli

    path = tmp_path / "other-columns.sqlite"
    _store_with_other_columns(path)
    _assert_refused_untouched(path)
    before = _digest(path)
    assert cli(["report", "--store", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "columns" in err and len(err.splitlines()) == 1
    assert _digest(path) == before and sorted(os.listdir(tmp_path)) == ["other-columns.sqlite"]


def test_readonly_open_writes_nothing_and_refuses_writes(tmp_path):
    path = tmp_path / "r.sqlite"
    key = _filled_store(path, n=5)
    before, listing = _digest(path), sorted(os.listdir(tmp_path))
    with ResultsStore(path, readonly=True) as store:
        assert [s.index for s in store.samples(key)] == list(range(5))
        with pytest.raises(StoreError, match="read-only"):
            store.add_sample(key, _sample(9))
    assert _digest(path) == before and sorted(os.listdir(tmp_path)) == listing  # no -wal, -shm or journal
    with pytest.raises(StoreError, match="does not exist"):
        ResultsStore(tmp_path / "absent.sqlite", readonly=True)


def test_readonly_open_sees_samples_a_live_writer_has_not_checkpointed(tmp_path):
    path = tmp_path / "live.sqlite"
    with ResultsStore(path) as writer:
        key = writer.ensure_run(CONFIG)
        writer.add_sample(key, _sample(0))
        assert Path(f"{path}-wal").stat().st_size > 0  # the sample lives in the WAL so far
        with ResultsStore(path, readonly=True) as reader:
            assert reader.done_samples(key) == {0}


def test_report_reads_a_store_on_a_readonly_disk_and_run_says_why_it_cannot_write(tmp_path, capsys):
    from faults import make_readonly, readonly_folder

    from workbench.cli import main as cli

    cell = {"strategy": "threshold", "params": {"tau": 0.9}, "plugins": [], "providers": {}, "trainer": "mdlm",
            "model_hash": "h", "task": "sum", "split": "eval", "decode": {"block_size": 8, "seed": 0}, "version": "t"}
    with readonly_folder(tmp_path / "ro") as folder:
        path = folder / "grid.sqlite"
        with ResultsStore(path) as store:
            key = store.ensure_run(cell)
            for i in range(4):
                store.add_sample(key, _sample(i))
        make_readonly(folder)
        listing = sorted(os.listdir(folder))
        with ResultsStore(path, readonly=True) as store:
            assert len(store.samples(key)) == 4
        capsys.readouterr()
        assert cli(["report", "--store", str(path), "--format", "json"]) == 0
        assert capsys.readouterr().out.startswith("{")
        with pytest.raises(StoreError, match="cannot be written here") as err:
            with ResultsStore(path) as store:
                store.add_sample(key, _sample(99))
        assert "--store" in str(err.value) and "\n" not in str(err.value)
        assert sorted(os.listdir(folder)) == listing


def test_full_disk_is_one_clear_error_and_keeps_what_was_stored(tmp_path):
    path = tmp_path / "full.sqlite"
    with ResultsStore(path) as store:
        key = store.ensure_run(CONFIG)
        store.add_sample(key, _sample(0))
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count = {pages + 1}")  # what SQLite reports on a full disk
        with pytest.raises(StoreError, match="disk is full") as err:
            for i in range(1, 200):
                store.add_sample(key, _sample(i, prompt="x" * 2000))
        assert "rerun the same command" in str(err.value)
        stored = store.done_samples(key)
    assert 0 in stored
    with ResultsStore(path) as store:
        assert store.done_samples(key) == stored
