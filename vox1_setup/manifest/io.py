"""Reading and writing `vox1-wheels/1` documents: local files, http(s) URLs, the bundled copy."""

from __future__ import annotations

import functools
import hashlib
import json
import marshal
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from vox1_setup.errors import BadInputError, DownloadError
from vox1_setup.manifest.model import MANIFEST_SCHEMA, ROW_NAMES, Manifest, WheelEntry
from vox1_setup.paths import Paths, default_paths

USER_MANIFEST_NAME = "wheels.json"
_LOOPBACK = ("localhost", "127.0.0.1", "::1")
_HINT = "check the file, or rebuild it with `vox1-setup manifest build --from-tsv FILE`"


def manifest_from_dict(doc: Any, origin: str, *, trusted: bool = False) -> Manifest:
    if not isinstance(doc, dict):
        raise BadInputError(f"{origin}: expected a JSON object with \"schema\" and \"entries\"", _HINT)
    schema = doc.get("schema")
    if schema != MANIFEST_SCHEMA:
        raise BadInputError(f"{origin}: schema is {schema!r}, expected {MANIFEST_SCHEMA!r}",
                            "this vox1-setup reads vox1-wheels/1 manifests; update vox1-setup or the manifest")
    raw = doc.get("entries")
    if not isinstance(raw, list):
        raise BadInputError(f"{origin}: \"entries\" must be a list", _HINT)
    entries = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise BadInputError(f"{origin}: entries[{i}]: expected an object", _HINT)
        try:
            entries.append(WheelEntry.from_dict(item, "entries", checked=not trusted))
        except BadInputError as exc:
            message = exc.message.replace("entries.", f"entries[{i}].", 1)
            raise BadInputError(f"{origin}: {message}", _HINT) from exc
    gen = doc.get("generated_from")
    return Manifest(entries=tuple(entries), generated_from=gen if isinstance(gen, dict) else {}, origin=origin)


def parse_manifest_text(text: str | bytes, origin: str, *, trusted: bool = False) -> Manifest:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInputError(f"{origin}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
                            _HINT) from exc
    return manifest_from_dict(doc, origin, trusted=trusted)


# --------------------------------------------------------------------------------------------------------------
# Parse cache: JSON-parsing and checking 4,000 entries costs more than the rest of `resolve`, so each manifest's
# parsed rows are kept in the user cache as marshal data (plain tuples of str/int/bool/None: nothing executes),
# named by the sha256 of the manifest's bytes: a changed manifest never hits a stale entry.

CACHE_FORMAT = "vox1-wheels-parsed/1"
CACHE_KEEP = 4  # cached manifests kept (the bundled one, a user copy, a lab's …); older ones are deleted


def _cache_file(cache_dir: Path, data: bytes) -> Path:
    return cache_dir / f"{hashlib.sha256(data).hexdigest()}.marshal"


def _read_cache(path: Path, origin: str) -> Manifest | None:
    try:
        header, rows = marshal.loads(path.read_bytes())
        if header[:2] != (CACHE_FORMAT, ROW_NAMES):
            return None
        entries = tuple(map(WheelEntry.from_row, rows))
        return Manifest(entries=entries, generated_from=json.loads(header[3]), origin=origin, schema=header[2])
    except (OSError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError):
        return None  # missing, truncated, or written by another version: parse the JSON instead


def _write_cache(path: Path, manifest: Manifest) -> None:
    """Best effort: a read-only or full cache dir only costs speed."""
    header = (CACHE_FORMAT, ROW_NAMES, manifest.schema, json.dumps(dict(manifest.generated_from), sort_keys=True))
    shared: dict[Any, Any] = {}

    def share(value: Any) -> Any:
        """Equal strings (and tuples of strings) as one object: marshal then writes references, which load 3x
        faster. Only these types: True == 1 and False == 0 would merge a bool with an int."""
        if type(value) is str or (type(value) is tuple and all(type(v) is str for v in value)):
            return shared.setdefault(value, value)
        return value

    rows = tuple(tuple(map(share, e.to_row())) for e in manifest.entries)
    try:
        _atomic_write(path, marshal.dumps((header, rows)))
        stale = sorted(path.parent.glob("*.marshal"), key=lambda f: f.stat().st_mtime, reverse=True)[CACHE_KEEP:]
        for old in stale:
            old.unlink(missing_ok=True)
    except OSError:
        pass


def parse_manifest_bytes(data: bytes, origin: str, *, trusted: bool = False,
                         cache_dir: Path | None = None) -> Manifest:
    """`parse_manifest_text`, through the parse cache in `cache_dir` when one is given."""
    if cache_dir is None:
        return parse_manifest_text(data, origin, trusted=trusted)
    path = _cache_file(cache_dir, data)
    cached = _read_cache(path, origin)
    if cached is not None:
        return cached
    manifest = parse_manifest_text(data, origin, trusted=trusted)
    _write_cache(path, manifest)
    return manifest


def _fetch(url: str, timeout: float) -> bytes:
    import requests

    try:
        response = requests.get(url, timeout=timeout, headers={"Accept": "application/json"})
    except requests.RequestException as exc:
        raise DownloadError(f"cannot fetch manifest {url}: {exc}",
                            "check the URL and the network, or pass a local file with --manifest") from exc
    if response.status_code != 200:
        raise DownloadError(f"cannot fetch manifest {url}: HTTP {response.status_code}",
                            "check the URL, or pass a local file with --manifest")
    return response.content


def load_manifest(path_or_url: str | os.PathLike[str], *, timeout: float = 30.0,
                  cache_dir: Path | None = None) -> Manifest:
    """Load a manifest from a path, a `file://` URL, or an https URL (plain http only on loopback).
    `cache_dir`: keep the parsed form there (see "Parse cache")."""
    text = os.fspath(path_or_url)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if scheme == "http" and (parts.hostname or "") not in _LOOPBACK:
            raise BadInputError(f"refusing to load a manifest over plain http: {text}",
                                "use an https URL (a manifest decides which files get installed)")
        return parse_manifest_bytes(_fetch(text, timeout), text, cache_dir=cache_dir)
    path = _file_url_path(parts.netloc, parts.path) if scheme == "file" else Path(text)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInputError(f"cannot read manifest {path}: {exc.strerror or exc}",
                            "pass an existing file or URL with --manifest / VOX1_MANIFEST") from exc
    return parse_manifest_bytes(data, str(path), cache_dir=cache_dir)


def _file_url_path(netloc: str, url_path: str) -> Path:
    """`file:///C:/Users/A%20B/w.json` -> C:\\Users\\A B\\w.json on Windows (a UNC share with a host)."""
    from urllib.request import url2pathname  # imports http.client: only for file:// URLs

    return Path(url2pathname(f"//{netloc}{url_path}" if netloc and netloc != "localhost" else url_path))


def bundled_manifest_bytes() -> bytes:
    # A plain path, not importlib.resources: that import pulls in tempfile, shutil, bz2 and lzma (tens of ms
    # on every command), and vox1-setup is never run from a zip.
    return (Path(__file__).resolve().parent.parent / "data" / "wheels.json").read_bytes()


@functools.lru_cache(maxsize=1)
def default_manifest() -> Manifest:
    """The manifest shipped with vox1-setup (package data), loaded once per process through the parse cache of
    the default paths (VOX1_HOME or the user cache dir). Call `default_manifest.cache_clear()` to reload."""
    return parse_manifest_bytes(bundled_manifest_bytes(), "bundled wheels.json", trusted=True,
                                cache_dir=parse_cache_dir(default_paths()))


def parse_cache_dir(paths: Paths) -> Path:
    return paths.cache / "manifests"


def user_manifest_path(paths: Paths) -> Path:
    """Where `vox1-setup manifest update` writes by default."""
    return paths.data / USER_MANIFEST_NAME


def active_manifest(option: str | None, paths: Paths | None = None) -> Manifest:
    """What commands use: --manifest/VOX1_MANIFEST, else the copy `manifest update` wrote, else the bundled one."""
    cache_dir = None if paths is None else parse_cache_dir(paths)
    if option:
        return load_manifest(option, cache_dir=cache_dir)
    if paths is not None and user_manifest_path(paths).is_file():
        user = user_manifest_path(paths)
        try:
            return load_manifest(user, cache_dir=cache_dir)
        except BadInputError as exc:
            raise BadInputError(exc.message, f"this is the copy `vox1-setup manifest update` wrote: run it again, or "
                                f"delete {user} to go back to the bundled manifest") from exc
    return default_manifest()


def dump_manifest(manifest: Manifest) -> bytes:
    """Byte-stable JSON: one entry per line (readable diffs), keys in schema order, UTF-8, LF endings."""
    head = json.dumps({"schema": manifest.schema, "generated_from": _sorted(manifest.generated_from)},
                      ensure_ascii=False)
    lines = [json.dumps(e.to_dict(), ensure_ascii=False) for e in manifest.entries]
    body = ",\n".join("  " + line for line in lines)
    text = head[:-1] + ', "entries": [\n' + body + ("\n" if lines else "") + "]}\n"
    return text.encode("utf-8")


def _sorted(value: Mapping[str, Any]) -> dict[str, Any]:
    return {k: value[k] for k in sorted(value)}


def write_manifest(manifest: Manifest, path: Path) -> None:
    """Atomic write: temp file beside the target, then replace."""
    _atomic_write(path, dump_manifest(manifest))


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    import tempfile  # writes are rare; resolve only reads

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        Path(tmp).chmod(0o644)  # mkstemp makes 0600; a manifest (also package data) is for everyone to read
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
