"""download.py against a real loopback HTTP server with scripted faults."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.http_server import FileServer
from vox1_setup.download import (
    DownloadResult,
    RetryPolicy,
    Timeouts,
    download,
    local_path,
    parse_content_range_start,
    parse_retry_after,
    source_kind,
)
from vox1_setup.errors import BadInputError, DownloadError, ExitCode

DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def fetch(srv: FileServer, dest: Path, *, faults: list[str] | None = None, sha: str | None = SHA,
          sleeps: Sleeps | None = None, attempts: int = 5, read_timeout: float = 5.0) -> tuple[DownloadResult, Sleeps]:
    url = srv.add("/f.whl", DATA)
    srv.script("/f.whl", faults or [])
    sleeps = sleeps if sleeps is not None else Sleeps()
    result = download(url, dest, expected_sha256=sha, allow_insecure_localhost=True,
                      policy=RetryPolicy(attempts=attempts, backoff=0.01, max_wait=2.0, sleep=sleeps),
                      timeouts=Timeouts(connect=2.0, read=read_timeout))
    return result, sleeps


@pytest.fixture
def srv() -> Iterator[FileServer]:
    with FileServer() as server:
        yield server


def test_plain_download_hashes_while_streaming(srv: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "dir ü" / "f.whl"
    result, sleeps = fetch(srv, dest)
    assert dest.read_bytes() == DATA
    assert result.sha256 == SHA and result.attempts == 1 and not result.resumed
    assert not dest.with_name("f.whl.part").exists()
    assert sleeps.calls == []


def test_500_then_ok_retries_with_backoff(srv: FileServer, tmp_path: Path) -> None:
    result, sleeps = fetch(srv, tmp_path / "f.whl", faults=["500", "503"])
    assert result.attempts == 3
    assert sleeps.calls == [0.01, 0.02]


def test_429_honours_retry_after(srv: FileServer, tmp_path: Path) -> None:
    result, sleeps = fetch(srv, tmp_path / "f.whl", faults=["429:1"])
    assert result.attempts == 2
    assert sleeps.calls == [1.0]


def test_cut_connection_resumes_with_range(srv: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "f.whl"
    result, _ = fetch(srv, dest, faults=["cut:100000"])
    assert dest.read_bytes() == DATA
    assert result.resumed
    ranges = [h.get("Range") for _, h in srv.requests]
    assert ranges == [None, "bytes=100000-"]


def test_server_ignoring_range_restarts_cleanly(srv: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "f.whl"
    result, _ = fetch(srv, dest, faults=["cut:5000", "norange"])
    assert dest.read_bytes() == DATA and not result.resumed


def test_stalled_body_is_a_read_timeout_then_resumes(srv: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "f.whl"
    result, _ = fetch(srv, dest, faults=["stall:1.5"], read_timeout=0.3)
    assert dest.read_bytes() == DATA
    assert result.attempts == 2 and result.resumed


def test_wrong_bytes_fail_with_checksum_mismatch_and_leave_nothing(srv: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "f.whl"
    with pytest.raises(DownloadError) as info:
        fetch(srv, dest, faults=["wrong"])
    assert "checksum mismatch" in info.value.message and SHA in info.value.message
    assert info.value.exit_code == ExitCode.DOWNLOAD_FAILED
    assert list(dest.parent.iterdir()) == []


def test_404_fails_at_once(srv: FileServer, tmp_path: Path) -> None:
    with pytest.raises(DownloadError) as info:
        fetch(srv, tmp_path / "f.whl", faults=["404"])
    assert "HTTP 404" in info.value.message
    assert len(srv.requests) == 1


def test_retries_exhausted_keep_the_partial_file_for_next_time(srv: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "f.whl"
    with pytest.raises(DownloadError) as info:
        fetch(srv, dest, faults=["cut:1000", "500", "500"], attempts=3)
    assert "after 3 tries" in info.value.message
    assert dest.with_name("f.whl.part").stat().st_size == 1000
    result, _ = fetch(srv, dest)  # the next run resumes
    assert result.resumed and dest.read_bytes() == DATA


def test_stale_partial_from_another_file_is_discarded(srv: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "f.whl"
    dest.with_name("f.whl.part").write_bytes(b"x" * 1000)  # not a prefix of DATA
    result, _ = fetch(srv, dest)
    assert dest.read_bytes() == DATA and not result.resumed


def test_connection_refused_is_retried_then_fails(tmp_path: Path) -> None:
    with FileServer() as server:
        url = server.url("/gone.whl")
    sleeps = Sleeps()
    with pytest.raises(DownloadError) as info:
        download(url, tmp_path / "gone.whl", allow_insecure_localhost=True,
                 policy=RetryPolicy(attempts=3, backoff=0.01, sleep=sleeps))
    assert "cannot connect" in info.value.message
    assert len(sleeps.calls) == 2


def test_no_checksum_computes_one(srv: FileServer, tmp_path: Path) -> None:
    result, _ = fetch(srv, tmp_path / "f.whl", sha=None)
    assert result.sha256 == SHA


@pytest.mark.parametrize(("url", "allow", "kind"), [
    ("https://github.com/x/y.whl", False, "https"),
    ("http://127.0.0.1:8000/y.whl", True, "http"),
    ("http://localhost/y.whl", True, "http"),
    ("http://[::1]/y.whl", True, "http"),
    ("file:///tmp/y.whl", False, "file"),
    ("/tmp/dir with space/y.whl", False, "file"),
])
def test_allowed_sources(url: str, allow: bool, kind: str) -> None:
    assert source_kind(url, allow_insecure_localhost=allow) == kind


@pytest.mark.parametrize(("url", "allow", "text"), [
    ("http://example.com/y.whl", True, "refusing plain http://"),
    ("http://127.0.0.1/y.whl", False, "--allow-insecure-localhost"),
    ("ftp://example.com/y.whl", False, "unsupported URL scheme"),
])
def test_refused_sources(url: str, allow: bool, text: str) -> None:
    with pytest.raises(BadInputError) as info:
        source_kind(url, allow_insecure_localhost=allow)
    assert text in f"{info.value.message} {info.value.hint}"


def test_header_parsers() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 - 10) == pytest.approx(10.0)
    assert parse_retry_after("soon") is None
    assert parse_content_range_start("bytes 100-199/200") == 100
    assert parse_content_range_start(None) is None


def test_file_urls_become_local_paths() -> None:
    assert local_path("file:///tmp/dir%20with%20space/%C3%BC.whl") == Path("/tmp/dir with space/ü.whl")
    assert local_path("file://localhost/tmp/x.whl") == Path("/tmp/x.whl")
    assert local_path("file://server/share/x.whl") == Path("//server/share/x.whl")
    assert local_path("/tmp/plain path/x.whl") == Path("/tmp/plain path/x.whl")
