"""The wheel cache: `<cache>/wheels/<sha256>/<filename>`, plus `index.json` (schema vox1-cache/1).

Content-addressed, so a file is trusted exactly as much as its hash. The index remembers where each file came
from and whether its hash was pinned by a manifest or recorded on first download (trust on first use): a later
download of the same URL must then produce the same bytes. Recorded hashes (`recorded`: URL → sha256) survive
`cache clear` (with the time they were recorded, `recorded_at`); only the files go.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from vox1_setup.download import sha256_file
from vox1_setup.errors import DownloadError
from vox1_setup.journal import atomic_write_json, utc_now
from vox1_setup.paths import Paths

CACHE_SCHEMA = "vox1-cache/1"
TRUST_PINNED = "pinned"  # hash given by the manifest, --sha256 or a wheelhouse checksum file
TRUST_FIRST_USE = "first-use"  # hash computed on the first download and recorded
DOWNLOAD_LOCK_WAIT_S = 3600.0  # a slow link can take this long for a 500 MB wheel; a dead holder frees it at once


@dataclass(frozen=True)
class CachedWheel:
    path: Path
    filename: str
    sha256: str
    size: int
    url: str | None
    trust: str
    added: str

    def to_dict(self) -> dict[str, Any]:
        return {"filename": self.filename, "sha256": self.sha256, "size": self.size, "url": self.url,
                "trust": self.trust, "added": self.added, "path": str(self.path)}


class WheelCache:
    def __init__(self, paths: Paths) -> None:
        self.root = paths.wheel_cache
        self.index_path = self.root / "index.json"

    def incoming_dir(self) -> Path:
        """Downloads stream here first (same file system as the entries, so the final move is a rename)."""
        return self.root / ".incoming"

    @contextmanager
    def download_lock(self, key: str, filename: str) -> Iterator[None]:
        """One download per URL at a time across processes (`key` names the URL)."""
        self.incoming_dir().mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.incoming_dir() / f"{key}.lock"))
        try:
            lock.acquire(timeout=DOWNLOAD_LOCK_WAIT_S)
        except Timeout:
            raise DownloadError(f"another vox1-setup has been downloading {filename} for "
                                f"{DOWNLOAD_LOCK_WAIT_S / 60:.0f} minutes", "wait for it, or stop it, and run this "
                                "again; nothing was changed") from None
        try:
            yield
        finally:
            lock.release()

    def _lock(self) -> FileLock:
        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / ".index.lock"))

    def _read_doc(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.index_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) and doc.get("schema") == CACHE_SCHEMA else {}

    def _read_index(self) -> dict[str, dict[str, Any]]:
        entries = self._read_doc().get("entries")
        if not isinstance(entries, dict):
            return {}
        return {str(k): v for k, v in entries.items() if isinstance(v, dict)}

    def _recorded(self) -> dict[str, str]:
        rec = self._read_doc().get("recorded")
        return {str(k): str(v) for k, v in rec.items()} if isinstance(rec, dict) else {}

    def _recorded_at(self) -> dict[str, str]:
        rec = self._read_doc().get("recorded_at")
        return {str(k): str(v) for k, v in rec.items()} if isinstance(rec, dict) else {}

    def _write(self, entries: dict[str, dict[str, Any]], recorded: dict[str, str],
               recorded_at: dict[str, str] | None = None) -> None:
        atomic_write_json(self.index_path, {"schema": CACHE_SCHEMA, "entries": entries, "recorded": recorded,
                                            "recorded_at": self._recorded_at() if recorded_at is None else recorded_at})

    def _entry(self, sha: str, meta: dict[str, Any]) -> CachedWheel | None:
        filename = str(meta.get("filename", ""))
        path = self.root / sha / filename
        if not filename or not path.is_file():
            return None
        return CachedWheel(path=path, filename=filename, sha256=sha, size=path.stat().st_size,
                           url=meta.get("url"), trust=str(meta.get("trust", TRUST_FIRST_USE)),
                           added=str(meta.get("added", "")))

    def entries(self) -> list[CachedWheel]:
        found = [self._entry(sha, meta) for sha, meta in self._read_index().items()]
        return sorted((e for e in found if e is not None), key=lambda e: e.added, reverse=True)

    def recorded_sha256(self, url: str | None, filename: str) -> str | None:
        """The hash recorded for this URL (or, lacking a URL, this file name) on an earlier download."""
        if url and url in self._recorded():
            return self._recorded()[url]
        for sha, meta in self._read_index().items():
            if (url and meta.get("url") == url) or (not url and meta.get("filename") == filename):
                return sha
        return None

    def known(self, sha256: str) -> bool:
        """Is this hash already in the index (a file added earlier, whatever its trust)?"""
        return sha256.lower() in self._read_index()

    def recorded_on(self, url: str | None, sha256: str) -> str | None:
        """When this hash was first recorded: for a URL, the day of its first download (kept across
        `cache clear`); else when the file first entered the cache."""
        if url and self._recorded().get(url) == sha256.lower():
            when = self._recorded_at().get(url)
            if when:
                return when
        added = self._read_index().get(sha256.lower(), {}).get("added")
        return str(added) if added else None

    def lookup(self, sha256: str, *, check: bool = True) -> CachedWheel | None:
        """A cached file with this hash; re-hashed by default, so a corrupted entry is dropped, not used."""
        meta = self._read_index().get(sha256.lower())
        if meta is None:
            return None
        entry = self._entry(sha256.lower(), meta)
        if entry is None:
            return None
        if check and sha256_file(entry.path) != entry.sha256:
            shutil.rmtree(entry.path.parent, ignore_errors=True)
            return None
        return entry

    def add(self, file: Path, *, filename: str, sha256: str, url: str | None, trust: str,
            move: bool = True) -> CachedWheel:
        sha = sha256.lower()
        target = self.root / sha / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        if move:
            file.replace(target)
        elif file.resolve() != target.resolve():
            tmp = target.with_name(target.name + ".tmp")
            shutil.copyfile(file, tmp)
            tmp.replace(target)
        with self._lock():
            entries = self._read_index()
            old = entries.get(sha, {})
            entries[sha] = {"filename": filename, "url": url or old.get("url"),
                            "trust": TRUST_PINNED if TRUST_PINNED in (trust, old.get("trust")) else trust,
                            "added": old.get("added") or utc_now()}
            recorded, recorded_at = self._recorded(), self._recorded_at()
            if url and trust == TRUST_FIRST_USE and url not in recorded:
                recorded[url] = sha
                recorded_at[url] = utc_now()
            self._write(entries, recorded, recorded_at)
        found = self._entry(sha, entries[sha])
        assert found is not None
        return found

    def clear(self) -> tuple[int, int]:
        """Remove every cached wheel and partial download; returns (files, bytes) freed."""
        count, size = 0, 0
        with self._lock():
            recorded = self._recorded()
            for entry in self.entries():
                count += 1
                size += entry.size
            for child in self.root.iterdir():
                if child.name in (".index.lock", self.index_path.name):
                    continue
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
            self._write({}, recorded)
        return count, size
