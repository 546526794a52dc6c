"""Reading and writing `vox1-wheels/1` documents: local files, http(s) URLs, the bundled copy."""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from vox1_setup.errors import BadInputError, DownloadError
from vox1_setup.manifest.model import MANIFEST_SCHEMA, Manifest, WheelEntry
from vox1_setup.paths import Paths

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


def load_manifest(path_or_url: str | os.PathLike[str], *, timeout: float = 30.0) -> Manifest:
    """Load a manifest from a path, a `file://` URL, or an https URL (plain http only on loopback)."""
    text = os.fspath(path_or_url)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if scheme == "http" and (parts.hostname or "") not in _LOOPBACK:
            raise BadInputError(f"refusing to load a manifest over plain http: {text}",
                                "use an https URL (a manifest decides which files get installed)")
        return parse_manifest_text(_fetch(text, timeout), text)
    path = Path(unquote(parts.path)) if scheme == "file" else Path(text)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInputError(f"cannot read manifest {path}: {exc.strerror or exc}",
                            "pass an existing file or URL with --manifest / VOX1_MANIFEST") from exc
    return parse_manifest_text(data, str(path))


def bundled_manifest_bytes() -> bytes:
    return resources.files("vox1_setup").joinpath("data").joinpath("wheels.json").read_bytes()


@functools.lru_cache(maxsize=1)
def default_manifest() -> Manifest:
    """The manifest shipped with vox1-setup (package data). Cached: call `default_manifest.cache_clear()`."""
    return parse_manifest_text(bundled_manifest_bytes(), "bundled wheels.json", trusted=True)


def user_manifest_path(paths: Paths) -> Path:
    """Where `vox1-setup manifest update` writes by default."""
    return paths.data / USER_MANIFEST_NAME


def active_manifest(option: str | None, paths: Paths | None = None) -> Manifest:
    """What commands use: --manifest/VOX1_MANIFEST, else the copy `manifest update` wrote, else the bundled one."""
    if option:
        return load_manifest(option)
    if paths is not None and user_manifest_path(paths).is_file():
        return load_manifest(user_manifest_path(paths))
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
    data = dump_manifest(manifest)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        Path(tmp).chmod(0o644)  # mkstemp makes 0600; a manifest (also package data) is for everyone to read
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
