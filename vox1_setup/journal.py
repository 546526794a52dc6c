"""The install journal: one crash-safe JSON document per change to a target interpreter.

An entry is written (atomically: temp file, fsync, `os.replace`) before anything changes, with the before-state
and the plan, then after every step. While it runs, a `<id>.active` marker sits beside it; a marker whose process
is gone means the change was killed half-way (power loss, kill -9), which every command reports and
`vox1-setup rollback` repairs. Stashes of replaced files live in `<id>/stash/` next to the entry.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from vox1_setup.errors import BadInputError
from vox1_setup.paths import Paths

JOURNAL_SCHEMA = "vox1-journal/1"
ACTIVE_SUFFIX = ".active"


class Status(str, Enum):
    IN_PROGRESS = "in-progress"
    COMMITTED = "committed"  # the change is in place and verified
    ROLLED_BACK = "rolled-back"  # it failed and the before-state was restored and verified
    ROLLBACK_FAILED = "rollback-failed"  # it failed and the before-state could not be restored
    UNDONE = "undone"  # committed, later reverted by `vox1-setup rollback`


class Action(str, Enum):
    INSTALL = "install"
    UNINSTALL = "uninstall"
    ROLLBACK = "rollback"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def atomic_write_json(path: Path, doc: Mapping[str, Any]) -> None:
    """Write-then-rename, so a reader (or a crash) sees the old document or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp")
    data = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    try:
        with tmp.open("w", encoding="utf-8") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()


def same_target(a: object, b: object) -> bool:
    """Two spellings of one interpreter path (on Windows, paths are case-insensitive and `/` means `\\`)."""
    return isinstance(a, str) and isinstance(b, str) and os.path.normcase(a) == os.path.normcase(b)


def _process_started(pid: int) -> float | None:
    try:
        import psutil

        return float(psutil.Process(pid).create_time())
    except Exception:  # no such process, or no permission to ask: treat as unknown
        return None


def process_alive(pid: int, started: float | None) -> bool:
    """Is the process that wrote an entry still running? A reused pid has another start time."""
    now_started = _process_started(pid)
    if now_started is None:
        return False
    return started is None or abs(now_started - started) < 1.0


@dataclass(frozen=True)
class EntrySummary:
    """One line of `history`."""

    id: str
    action: str
    status: str
    python: str
    created: str
    updated: str
    from_version: str | None
    to_version: str | None
    message: str | None
    interrupted: bool

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], interrupted: bool) -> EntrySummary:
        before = (doc.get("before") or {}).get("flash_attn") or {}
        plan = doc.get("plan") or {}
        outcome = doc.get("outcome") or {}
        return cls(
            id=str(doc.get("id")), action=str(doc.get("action")), status=str(doc.get("status")),
            python=str(doc.get("python")), created=str(doc.get("created")), updated=str(doc.get("updated")),
            from_version=before.get("version"), to_version=plan.get("version"),
            message=outcome.get("message"), interrupted=interrupted,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "action": self.action, "status": "interrupted" if self.interrupted else self.status,
                "python": self.python, "created": self.created, "updated": self.updated,
                "from_version": self.from_version, "to_version": self.to_version, "message": self.message}


class Entry:
    """A journal entry being written. Every mutation is persisted before the method returns."""

    def __init__(self, journal: Journal, doc: dict[str, Any]) -> None:
        self.journal = journal
        self.doc = doc

    @property
    def id(self) -> str:
        return str(self.doc["id"])

    @property
    def path(self) -> Path:
        return self.journal.root / f"{self.id}.json"

    @property
    def stash_dir(self) -> Path:
        return self.journal.root / self.id / "stash"

    @property
    def status(self) -> str:
        return str(self.doc.get("status"))

    def save(self) -> None:
        self.doc["updated"] = utc_now()
        atomic_write_json(self.path, self.doc)

    def step(self, name: str, **detail: Any) -> None:
        self.doc.setdefault("steps", []).append({"name": name, "at": utc_now(), **detail})
        self.save()

    def update(self, **fields: Any) -> None:
        self.doc.update(fields)
        self.save()

    def finish(self, status: Status, **fields: Any) -> None:
        self.doc.update(fields)
        self.doc["status"] = status.value
        self.save()
        self.journal.clear_active(self.id)


class Journal:
    def __init__(self, paths: Paths) -> None:
        self.root = paths.journal

    def begin(self, action: Action, python: str, **fields: Any) -> Entry:
        # Microseconds: ids sort newest first, and a recovery plus the install after it share one second.
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%f")
        entry_id = f"{stamp}-{action.value}-{secrets.token_hex(3)}"
        now = utc_now()
        doc: dict[str, Any] = {
            "schema": JOURNAL_SCHEMA, "id": entry_id, "action": action.value, "status": Status.IN_PROGRESS.value,
            "python": python, "created": now, "updated": now, "host": socket.gethostname(),
            "pid": os.getpid(), "pid_started": _process_started(os.getpid()),
            "command": " ".join(["vox1-setup", *sys.argv[1:]]),
            "steps": [],
        }
        doc.update(fields)
        entry = Entry(self, doc)
        entry.save()
        # The marker goes last: an entry without it is never mistaken for a crash, one with it always is.
        (self.root / f"{entry_id}{ACTIVE_SUFFIX}").write_text(str(os.getpid()), encoding="utf-8")
        return entry

    def clear_active(self, entry_id: str) -> None:
        (self.root / f"{entry_id}{ACTIVE_SUFFIX}").unlink(missing_ok=True)

    def load(self, entry_id: str) -> Entry:
        path = self.root / f"{entry_id}.json"
        if not path.is_file() or "/" in entry_id or "\\" in entry_id:
            raise BadInputError(f"no journal entry {entry_id!r}", "list them with `vox1-setup history`")
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise BadInputError(f"journal entry {path} is unreadable: {exc}",
                                "it may have been edited by hand; remove it to continue") from exc
        if not isinstance(doc, dict) or doc.get("schema") != JOURNAL_SCHEMA:
            found = doc.get("schema") if isinstance(doc, dict) else None
            raise BadInputError(f"journal entry {path}: unknown schema {found!r}",
                                f"this vox1-setup reads {JOURNAL_SCHEMA}")
        return Entry(self, doc)

    def ids(self) -> list[str]:
        """Entry ids, newest first (ids start with a UTC timestamp)."""
        if not self.root.is_dir():
            return []
        names = [p.name[:-5] for p in self.root.iterdir() if p.suffix == ".json" and not p.name.startswith(".")]
        return sorted(names, reverse=True)

    def entries(self) -> Iterator[Entry]:
        for entry_id in self.ids():
            try:
                yield self.load(entry_id)
            except BadInputError:
                continue

    def is_interrupted(self, entry: Entry) -> bool:
        """In progress, but the process writing it is gone (or ran on this host and died)."""
        if entry.status != Status.IN_PROGRESS.value:
            return False
        if entry.doc.get("host") != socket.gethostname():
            return True  # a journal on a shared disk written elsewhere: not ours to judge as running
        pid = entry.doc.get("pid")
        return not (isinstance(pid, int) and process_alive(pid, entry.doc.get("pid_started")))

    def interrupted(self, python: str | None = None) -> list[Entry]:
        """Killed entries (newest first), optionally for one target interpreter only."""
        if not self.root.is_dir():
            return []
        found = []
        for marker in sorted(self.root.glob(f"*{ACTIVE_SUFFIX}"), reverse=True):
            entry_id = marker.name[: -len(ACTIVE_SUFFIX)]
            try:
                entry = self.load(entry_id)
            except BadInputError:
                continue
            if self.is_interrupted(entry) and (python is None or same_target(entry.doc.get("python"), python)):
                found.append(entry)
        return found

    def last_committed(self, python: str | None, actions: tuple[Action, ...] = (Action.INSTALL, Action.UNINSTALL,
                                                                           Action.ROLLBACK)) -> Entry | None:
        for entry in self.entries():
            if ((python is None or same_target(entry.doc.get("python"), python))
                    and entry.status == Status.COMMITTED.value
                    and entry.doc.get("action") in {a.value for a in actions}):
                return entry
        return None


def interrupted_notice(paths: Paths) -> str | None:
    """Called by the CLI before every command: one stat of the journal dir when nothing is wrong."""
    root = paths.journal
    try:
        with os.scandir(root) as it:
            if not any(e.name.endswith(ACTIVE_SUFFIX) for e in it):
                return None
    except OSError:
        return None
    entries = Journal(paths).interrupted()
    if not entries:
        return None
    e = entries[0]
    what = f"{e.doc.get('action')} into {e.doc.get('python')} (journal entry {e.id}, started {e.doc.get('created')})"
    more = f" and {len(entries) - 1} more" if len(entries) > 1 else ""
    return (f"warning: an interrupted {what}{more} left this interpreter in an unknown state.\n"
            f"  run `vox1-setup rollback` to restore the state before it (or run the install again).")


def wait_for_test_pause(step: str) -> None:
    """Test-only hook: with VOX1_TEST_PAUSE_AT=<step>, announce the step on stderr and sleep, so a test can
    kill -9 or Ctrl-C the process at a known point. Never set it outside the test suite."""
    if os.environ.get("VOX1_TEST_PAUSE_AT") != step:
        return
    sys.stderr.write(f"VOX1_TEST_PAUSED {step}\n")
    sys.stderr.flush()
    time.sleep(600)
