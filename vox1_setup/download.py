"""Hashed, resumable, retried download of one file (the way pip does it, plus HTTP Range resume).

The bytes stream into `<dest>.part` beside the destination while sha256 is computed; the file is renamed onto
`dest` with `os.replace` only after the hash matches. A cut connection resumes with `Range`; connection errors,
timeouts, 5xx and 429 are retried with exponential back-off (Retry-After honoured); other HTTP errors fail at once.
"""

from __future__ import annotations

import email.utils
import hashlib
import ipaddress
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from vox1_setup.errors import BadInputError, DownloadError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # tries in all, the first included
    backoff: float = 0.5  # seconds before the 2nd try; doubles each time
    max_wait: float = 60.0  # ceiling for back-off and Retry-After
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def wait_for(self, attempt: int, retry_after: float | None) -> float:
        base = self.backoff * (2 ** (attempt - 1))
        return float(min(self.max_wait, max(base, retry_after or 0.0)))


@dataclass(frozen=True)
class Timeouts:
    connect: float = 15.0
    read: float = 60.0  # between two bytes, not for the whole file


@dataclass(frozen=True)
class DownloadResult:
    path: Path
    sha256: str
    size: int
    attempts: int
    resumed: bool
    seconds: float


# --------------------------------------------------------------------------------------------------------------
# Which sources are allowed (pure)


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def source_kind(source: str, *, allow_insecure_localhost: bool = False) -> str:
    """'https', 'http' (loopback only, opt-in), or 'file' (a file:// URL or a plain path)."""
    parts = urlsplit(source)
    scheme = parts.scheme.lower()
    if scheme == "https":
        return "https"
    if scheme == "http":
        host = parts.hostname or ""
        if not is_loopback_host(host):
            raise BadInputError(f"refusing plain http:// download from {host or source!r}",
                                "use an https:// URL (or a local file); http:// is accepted only for loopback "
                                "mirrors with --allow-insecure-localhost")
        if not allow_insecure_localhost:
            raise BadInputError(f"refusing plain http:// download from {host}",
                                "for a local test mirror pass --allow-insecure-localhost")
        return "http"
    if scheme in {"file", ""} or (len(scheme) == 1 and os.name == "nt"):  # C:\wheels on Windows
        return "file"
    raise BadInputError(f"unsupported URL scheme {scheme!r} in {source!r}", "use https://, file:// or a path")


def local_path(source: str) -> Path:
    parts = urlsplit(source)
    if parts.scheme.lower() == "file":
        path = unquote(parts.path)
        if os.name == "nt" and path.startswith("/") and len(path) > 2 and path[2] == ":":
            path = path[1:]
        if parts.netloc and parts.netloc.lower() != "localhost":  # file://server/share/x.whl: a UNC path
            path = f"//{parts.netloc}{path}"
        return Path(path)
    return Path(source)


def filename_from_url(url: str) -> str:
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1])


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def parse_content_range_start(value: str | None) -> int | None:
    """`bytes 100-199/200` → 100."""
    if not value or not value.startswith("bytes "):
        return None
    try:
        return int(value[6:].split("-", 1)[0])
    except ValueError:
        return None


def sha256_file(path: Path, hasher: Any = None) -> str:
    h = hasher or hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return str(h.hexdigest())


# --------------------------------------------------------------------------------------------------------------
# The download


class _Worker:
    """Feeds blocks, in order, to one function on its own thread. sha256 and file writes release the GIL, so
    reading the socket, hashing and writing overlap instead of taking turns."""

    def __init__(self, fn: Callable[[bytes], Any]) -> None:
        import queue
        import threading

        self._fn = fn
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (block := self._queue.get()) is not None:
            if self.error is None:
                try:
                    self._fn(block)
                except BaseException as exc:  # reported by close()
                    self.error = exc

    def put(self, block: bytes) -> None:
        if self.error is not None:
            raise self.error
        self._queue.put(block)

    def close(self) -> None:
        """Wait until every block was processed; re-raise the function's error, if any."""
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error


class _Partial:
    """The `.part` file and the sha256 of exactly its bytes, kept in step while streaming (no second read)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.hasher: Any = None
        self.size = 0

    def sync(self) -> None:
        """Hash what an earlier run left (once); afterwards the hasher follows every write."""
        if self.hasher is not None:
            return
        self.hasher = hashlib.sha256()
        self.size = self.path.stat().st_size if self.path.exists() else 0
        if self.size:
            sha256_file(self.path, self.hasher)

    def reset(self) -> None:
        self.hasher = hashlib.sha256()
        self.size = 0

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.reset()


class _Transient(Exception):
    """A failure worth retrying; `retry_after` is the server's wish, if any."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@contextmanager
def _progress(enabled: bool, total: int | None, label: str) -> Iterator[Callable[[int], None]]:
    """A rich bar (size, speed, ETA) on stderr when it is a terminal; a no-op otherwise."""
    if not enabled:
        yield lambda _n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=console, transient=True) as bar:
        task = bar.add_task(label if len(label) <= 40 else label[:39] + "…", total=total)
        yield lambda n: bar.update(task, advance=n)


def download(
    url: str,
    dest: Path,
    *,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    policy: RetryPolicy | None = None,
    timeouts: Timeouts | None = None,
    progress: bool = False,
    allow_insecure_localhost: bool = False,
    session: Any = None,
) -> DownloadResult:
    """Fetch `url` to `dest`. The partial file survives a failure so the next call resumes it."""
    import requests

    source_kind(url, allow_insecure_localhost=allow_insecure_localhost)
    policy = policy or RetryPolicy()
    timeouts = timeouts or Timeouts()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _Partial(dest.with_name(dest.name + ".part"))
    expected = expected_sha256.lower() if expected_sha256 else None
    own_session = session is None
    http = session or requests.Session()
    started = time.perf_counter()
    attempt = 0
    resumed = False
    restarted_after_mismatch = False
    try:
        while True:
            attempt += 1
            try:
                got_resume = _fetch_once(http, url, part, timeouts=timeouts, progress=progress,
                                         expected_size=expected_size)
                resumed = resumed or got_resume
            except _Transient as exc:
                if attempt >= policy.attempts:
                    raise DownloadError(f"download of {filename_from_url(url)} failed after {attempt} tries: {exc}",
                                        "check the network (or the mirror) and run the command again; it resumes "
                                        "where it stopped. Nothing was installed.") from None
                wait = policy.wait_for(attempt, exc.retry_after)
                log.info("download: %s; retry %d/%d in %.2fs", exc, attempt + 1, policy.attempts, wait)
                policy.sleep(wait)
                continue
            digest = str(part.hasher.hexdigest())
            size = part.size
            if expected and digest != expected:
                part.discard()
                if resumed and not restarted_after_mismatch:
                    # The partial file may have come from an older copy on the server: one clean try.
                    restarted_after_mismatch = True
                    resumed = False
                    continue
                raise DownloadError(
                    f"checksum mismatch for {filename_from_url(url)}: expected sha256 {expected}, got {digest}",
                    "the file on the server is not the one the manifest names (tampered, truncated or re-uploaded); "
                    "it was deleted and nothing was installed. Refresh the manifest or report it.")
            if expected_size is not None and size != expected_size and not expected:
                part.discard()
                raise DownloadError(f"size mismatch for {filename_from_url(url)}: expected {expected_size} bytes, "
                                    f"got {size}", "nothing was installed; run the command again")
            part.path.replace(dest)
            return DownloadResult(dest, digest, size, attempt, resumed, time.perf_counter() - started)
    finally:
        if own_session:
            http.close()


def _fetch_once(http: Any, url: str, part: _Partial, *, timeouts: Timeouts, progress: bool,
                expected_size: int | None) -> bool:
    """One HTTP request appending to `part`. Returns True if it resumed. Raises _Transient or DownloadError."""
    import requests

    part.sync()
    have = part.size
    headers = {"Accept-Encoding": "identity"}  # the hash is of the file, not of a compressed transfer
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = http.get(url, headers=headers, stream=True, timeout=(timeouts.connect, timeouts.read))
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise _Transient(f"cannot connect: {_short(exc)}") from None
    with resp:
        status = resp.status_code
        if status in RETRYABLE_STATUS:
            raise _Transient(f"HTTP {status} {resp.reason}", parse_retry_after(resp.headers.get("Retry-After")))
        if status == 416 and have:
            # Our partial file is already complete (or longer than the file): start over.
            part.discard()
            raise _Transient("server refused the resume range; restarting")
        if status >= 400:
            hint = "the wheel is not at that address (any more); refresh the manifest" if status == 404 else \
                "check the URL and your access to it"
            raise DownloadError(f"HTTP {status} {resp.reason} for {url}", f"{hint}. Nothing was installed.")
        resuming = bool(have) and status == 206 and parse_content_range_start(resp.headers.get("Content-Range")) == have
        mode = "ab" if resuming else "wb"
        if not resuming:
            have = 0
            part.reset()
        length = resp.headers.get("Content-Length")
        total = (have + int(length)) if length and length.isdigit() else expected_size
        try:
            with part.path.open(mode) as f, _progress(progress, total, filename_from_url(url)) as advance:
                if have:
                    advance(have)
                raw = resp.raw
                # read1 returns what has arrived (up to CHUNK): a cut connection loses no received bytes.
                read = raw.read1 if hasattr(raw, "read1") else raw.read
                hasher, writer = _Worker(part.hasher.update), _Worker(f.write)
                try:
                    while True:
                        block = read(CHUNK)
                        if not block:
                            break
                        writer.put(block)
                        hasher.put(block)
                        part.size += len(block)
                        advance(len(block))
                finally:
                    # The file and the hash always hold the same bytes, even when the read failed.
                    writer.close()
                    hasher.close()
        except (requests.ConnectionError, requests.Timeout, OSError) as exc:
            if isinstance(exc, OSError) and not _is_network_error(exc):
                raise DownloadError(f"cannot write {part}: {exc}", "check free space and permissions") from None
            raise _Transient(f"connection lost after {part.size} bytes: {_short(exc)}") from None
        except Exception as exc:  # urllib3 errors (ProtocolError, ReadTimeoutError) when reading raw
            if type(exc).__module__.startswith("urllib3"):
                raise _Transient(f"connection lost: {_short(exc)}") from None
            raise
        written = part.size
        if total is not None and written < total:
            raise _Transient(f"connection closed after {written} of {total} bytes")
        return resuming


def _is_network_error(exc: OSError) -> bool:
    return type(exc).__module__.startswith(("urllib3", "requests", "http", "socket")) or isinstance(
        exc, (ConnectionError, TimeoutError))


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) < 300 else text[:300] + "…"
