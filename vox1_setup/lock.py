"""One change at a time per target interpreter: a file lock plus a note saying who holds it.

The lock is an OS lock (fcntl/msvcrt through `filelock`), so a killed holder releases it by dying; the note is
only there so the second run can name the holder in its error.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from vox1_setup.errors import LockedError
from vox1_setup.journal import atomic_write_json, utc_now
from vox1_setup.paths import Paths

DEFAULT_WAIT_S = 5.0  # "waits briefly": an install takes longer than this, a stale lock cannot exist


def lock_key(python: str) -> str:
    """The interpreter's folder, not the file: `bin/python` and `bin/python3` of one venv are one target and
    must share the lock, while the file itself is not resolved (every venv's python links to the same base
    interpreter). Two interpreters in one folder then share a lock too: over-cautious, never unsafe."""
    folder = os.path.realpath(os.path.dirname(os.path.abspath(python)))  # noqa: PTH100, PTH120
    norm = os.path.normcase(folder)
    return hashlib.sha256(norm.encode("utf-8")).hexdigest()[:16]


def lock_wait_seconds() -> float:
    raw = os.environ.get("VOX1_LOCK_TIMEOUT")
    try:
        return float(raw) if raw else DEFAULT_WAIT_S
    except ValueError:
        return DEFAULT_WAIT_S


def _holder_text(note: Path) -> str:
    try:
        doc = json.loads(note.read_text(encoding="utf-8"))
        return f"pid {doc.get('pid')}, `{doc.get('command')}`, since {doc.get('since')}"
    except (OSError, ValueError, AttributeError):
        return "another vox1-setup process"


@contextmanager
def target_lock(paths: Paths, python: str, *, wait: float | None = None) -> Iterator[None]:
    paths.locks.mkdir(parents=True, exist_ok=True)
    key = lock_key(python)
    lock = FileLock(str(paths.locks / f"{key}.lock"))
    note = paths.locks / f"{key}.holder.json"
    try:
        lock.acquire(timeout=lock_wait_seconds() if wait is None else wait)
    except Timeout:
        raise LockedError(
            f"another vox1-setup is changing {python} ({_holder_text(note)})",
            "wait for it to finish and run this again; nothing was changed",
        ) from None
    try:
        atomic_write_json(note, {"pid": os.getpid(), "command": " ".join(["vox1-setup", *sys.argv[1:]]),
                                 "python": python, "since": utc_now()})
        yield
    finally:
        note.unlink(missing_ok=True)
        lock.release()
