"""A loopback HTTP server for the tests: serves files with Range support and plays scripted faults.

    with FileServer() as srv:
        srv.add("/w.whl", data)
        srv.script("/w.whl", ["500", "429:1", "cut:1000", "stall:0.5", "wrong", "404"])
        url = srv.url("/w.whl")

Each request to a path consumes the next fault of its script; when the script is empty, the file is served
normally (206 for a valid Range). Faults:
  "500" / "503" ...    that status, empty body
  "429:<secs>"         429 with Retry-After: <secs>
  "cut:<n>"            headers for the whole (remaining) body, then n bytes and the connection closes
  "stall:<secs>"       headers, 16 bytes, then silence for <secs> (a read timeout on the client)
  "wrong"              the right length of the wrong bytes
  "404"                not found
  "norange"            ignore a Range header (200 with the whole file)
  "slow:<secs>"        the whole body, in 8 pieces spread over <secs> (a download that takes a while)
"""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path

from tests.support.loopback import BackgroundServer, LoopbackHTTPServer, QuietHandler


class _Handler(QuietHandler):
    server: _Server

    def do_GET(self) -> None:
        srv = self.server
        path = self.path.split("?", 1)[0]
        with srv.lock:
            srv.requests.append((path, dict(self.headers.items())))
            script = srv.scripts.get(path, [])
            fault = script.pop(0) if script else None
        source = srv.files.get(path)
        if fault == "404" or source is None:
            self._status_only(404, "Not Found")
            return
        if fault and fault.isdigit():
            self._status_only(int(fault), "Scripted")
            return
        if fault and fault.startswith("429"):
            secs = fault.split(":", 1)[1] if ":" in fault else "1"
            self._status_only(429, "Too Many Requests", {"Retry-After": secs})
            return
        size = source.stat().st_size if isinstance(source, Path) else len(source)
        start = 0
        rng = self.headers.get("Range")
        m = re.match(r"bytes=(\d+)-$", rng or "")
        if m and fault != "norange":
            start = int(m.group(1))
            if start >= size:
                self._status_only(416, "Range Not Satisfiable", {"Content-Range": f"bytes */{size}"})
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(size - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if fault and fault.startswith("cut:"):
            self._send(source, start, min(size, start + int(fault.split(":")[1])))
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.wfile.flush()
                self.connection.shutdown(2)
            return
        if fault and fault.startswith("stall:"):
            self._send(source, start, min(size, start + 16))
            self.wfile.flush()
            time.sleep(float(fault.split(":")[1]))
            self.close_connection = True
            return
        if fault and fault.startswith("slow:"):
            pause = float(fault.split(":")[1]) / 8
            step = max(1, (size - start) // 8 + 1)
            for lo in range(start, size, step):
                self._send(source, lo, min(size, lo + step))
                self.wfile.flush()
                time.sleep(pause)
            return
        if fault == "wrong":
            self.wfile.write(b"\x00" * (size - start))
            return
        self._send(source, start, size)

    def _send(self, source: bytes | Path, start: int, end: int) -> None:
        if isinstance(source, Path):
            with source.open("rb") as f:
                f.seek(start)
                self.wfile.flush()
                with contextlib.suppress(OSError):
                    self.connection.sendfile(f, start, end - start)
            return
        with contextlib.suppress(OSError):
            self.wfile.write(source[start:end])

    def _status_only(self, code: int, reason: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(code, reason)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _Server(LoopbackHTTPServer):
    def __init__(self) -> None:
        super().__init__(_Handler)
        self.files: dict[str, bytes | Path] = {}
        self.scripts: dict[str, list[str]] = {}


class FileServer(BackgroundServer):
    def __init__(self) -> None:
        self._server: _Server = _Server()
        super().__init__(self._server)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def add(self, path: str, data: bytes | Path) -> str:
        """Serve `data` (bytes, or a file streamed with sendfile) at `path`; returns its URL."""
        self._server.files[path] = data
        return self.url(path)

    def script(self, path: str, faults: list[str]) -> None:
        with self._server.lock:
            self._server.scripts[path] = list(faults)
