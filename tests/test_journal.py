"""Journal, lock and cache units: atomic documents, interruption detection, lock key, content-addressed cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vox1_setup.cache import TRUST_FIRST_USE, TRUST_PINNED, WheelCache
from vox1_setup.errors import BadInputError
from vox1_setup.installer import fingerprint_diff
from vox1_setup.journal import JOURNAL_SCHEMA, Action, Journal, Status, atomic_write_json, interrupted_notice
from vox1_setup.lock import lock_key, target_lock
from vox1_setup.paths import default_paths


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_entry_lifecycle_is_persisted_at_every_step() -> None:
    paths = default_paths()
    journal = Journal(paths)
    entry = journal.begin(Action.INSTALL, "/opt/py ü/bin/python", before={"flash_attn": None},
                          plan={"version": "2.8.3"})
    doc = json.loads(entry.path.read_text(encoding="utf-8"))
    assert doc["schema"] == JOURNAL_SCHEMA and doc["status"] == "in-progress" and doc["pid"] == os.getpid()
    assert (paths.journal / f"{entry.id}.active").exists()
    assert journal.interrupted() == []  # this very process is alive: running, not interrupted
    entry.step("journaled")
    entry.finish(Status.COMMITTED, outcome={"message": "ok"})
    doc = json.loads(entry.path.read_text(encoding="utf-8"))
    assert [s["name"] for s in doc["steps"]] == ["journaled"] and doc["status"] == "committed"
    assert not (paths.journal / f"{entry.id}.active").exists()
    assert journal.last_committed("/opt/py ü/bin/python") is not None
    assert journal.ids() == [entry.id]


def test_dead_writer_means_interrupted_and_every_command_is_told() -> None:
    paths = default_paths()
    assert interrupted_notice(paths) is None  # no journal dir at all
    journal = Journal(paths)
    entry = journal.begin(Action.INSTALL, "/x/python", before={}, plan={})
    entry.update(pid=dead_pid())
    [found] = journal.interrupted()
    assert found.id == entry.id
    notice = interrupted_notice(paths)
    assert notice is not None and entry.id in notice and "vox1-setup rollback" in notice


def test_a_reused_pid_is_not_mistaken_for_the_writer() -> None:
    journal = Journal(default_paths())
    entry = journal.begin(Action.INSTALL, "/x/python", before={}, plan={})
    entry.update(pid_started=1.0)  # our pid, but a process started in 1970: not us
    assert [e.id for e in journal.interrupted()] == [entry.id]


def test_notice_is_cheap_when_nothing_is_pending() -> None:
    paths = default_paths()
    journal = Journal(paths)
    for _ in range(50):
        journal.begin(Action.INSTALL, "/x/python", before={}, plan={}).finish(Status.COMMITTED)
    t = time.perf_counter()
    for _ in range(100):
        assert interrupted_notice(paths) is None
    assert (time.perf_counter() - t) / 100 < 0.005


def test_atomic_write_never_leaves_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "dir ü" / "doc.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text(encoding="utf-8")) == {"a": 2}
    assert [p.name for p in target.parent.iterdir()] == ["doc.json"]


def test_unknown_or_broken_entries_are_reported() -> None:
    paths = default_paths()
    paths.journal.mkdir(parents=True)
    (paths.journal / "20200101T000000-install-aaaaaa.json").write_text('{"schema": "vox1-journal/99"}',
                                                                       encoding="utf-8")
    with pytest.raises(BadInputError, match="unknown schema"):
        Journal(paths).load("20200101T000000-install-aaaaaa")
    with pytest.raises(BadInputError, match="no journal entry"):
        Journal(paths).load("../etc/passwd")
    assert list(Journal(paths).entries()) == []


def test_lock_key_keeps_venv_symlinks_apart(tmp_path: Path) -> None:
    assert lock_key(str(tmp_path / "a" / "bin" / "python")) != lock_key(str(tmp_path / "b" / "bin" / "python"))


def test_lock_is_exclusive_and_names_the_holder(tmp_path: Path) -> None:
    paths = default_paths()
    python = str(tmp_path / "py")
    with target_lock(paths, python, wait=0.1):
        code = ("import sys; from vox1_setup.lock import target_lock; from vox1_setup.paths import default_paths\n"
                "try:\n  with target_lock(default_paths(), sys.argv[1], wait=0.2): print('got it')\n"
                "except Exception as e: print(e)")
        out = subprocess.run([sys.executable, "-c", code, python], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
        assert f"pid {os.getpid()}" in out.stdout
    with target_lock(paths, python, wait=0.1):
        pass


def test_cache_is_content_addressed_and_drops_corrupt_files(tmp_path: Path) -> None:
    cache = WheelCache(default_paths())
    src = tmp_path / "w.whl"
    src.write_bytes(b"wheel bytes")
    import hashlib

    sha = hashlib.sha256(b"wheel bytes").hexdigest()
    entry = cache.add(src, filename="w.whl", sha256=sha, url="https://h/w.whl", trust=TRUST_FIRST_USE, move=False)
    assert entry.path.read_bytes() == b"wheel bytes" and src.exists()
    assert cache.lookup(sha) is not None
    assert cache.recorded_sha256("https://h/w.whl", "w.whl") == sha
    cache.add(src, filename="w.whl", sha256=sha, url=None, trust=TRUST_PINNED, move=False)
    assert cache.entries()[0].trust == TRUST_PINNED  # a pin upgrades a first-use record
    entry.path.write_bytes(b"tampered")
    assert cache.lookup(sha) is None and not entry.path.exists()
    assert cache.clear() == (0, 0)
    assert cache.recorded_sha256("https://h/w.whl", "w.whl") == sha  # first-use hashes outlive `cache clear`


def test_fingerprint_diff_names_what_changed() -> None:
    before = {"distributions": {"flash_attn": "2.7.4", "pip": "25"},
              "flash_attn": {"version": "2.7.4", "files": {"flash_attn/__init__.py": "aa"}}, "module_origin": "x"}
    assert fingerprint_diff(before, before) == []
    after = {"distributions": {"flash_attn": "2.8.3", "pip": "25"},
             "flash_attn": {"version": "2.8.3", "files": {"flash_attn/__init__.py": "bb"}}, "module_origin": "x"}
    diff = fingerprint_diff(before, after)
    assert "flash_attn: 2.7.4 before, 2.8.3 now" in diff[0]
    assert "flash_attn/__init__.py" in diff[1]


def test_entries_of_one_second_keep_their_order() -> None:
    journal = Journal(default_paths())
    made = [journal.begin(Action.INSTALL, "/x/python", before={}, plan={}).id for _ in range(20)]
    assert journal.ids() == made[::-1]  # newest first, even within one second


def test_first_use_records_keep_their_date_across_cache_clear(tmp_path: Path) -> None:
    import hashlib

    cache = WheelCache(default_paths())
    src = tmp_path / "w.whl"
    src.write_bytes(b"wheel bytes")
    sha = hashlib.sha256(b"wheel bytes").hexdigest()
    assert not cache.known(sha) and cache.recorded_on("https://h/w.whl", sha) is None
    cache.add(src, filename="w.whl", sha256=sha, url="https://h/w.whl", trust=TRUST_FIRST_USE, move=False)
    when = cache.recorded_on("https://h/w.whl", sha)
    assert cache.known(sha) and when is not None and when.endswith("Z")
    cache.clear()
    assert not cache.known(sha)
    assert cache.recorded_on("https://h/w.whl", sha) == when  # the record, and its date, outlive the files
    assert cache.recorded_on("https://h/w.whl", "0" * 64) is None


def test_stop_signals_become_a_cancellation_but_ignored_ones_stay_ignored() -> None:
    import signal

    from vox1_setup.installer import Terminated, cancel_on_stop_signals

    if not hasattr(signal, "SIGHUP"):
        pytest.skip("POSIX signals")  # Windows: SIGBREAK, exercised by the same code path
    old_hup = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    old_term = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(Terminated) as caught, cancel_on_stop_signals():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN  # `nohup` keeps working
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        assert isinstance(caught.value, KeyboardInterrupt) and caught.value.signame == "SIGTERM"
        assert signal.getsignal(signal.SIGTERM) == old_term
    finally:
        signal.signal(signal.SIGHUP, old_hup)
