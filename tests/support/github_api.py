"""A loopback stand-in for the GitHub releases API (`GET /repos/{owner}/{repo}/releases?per_page=&page=`).

It answers like the real API at the interface vox1-setup uses: a JSON list per page, a `Link: <…>; rel="next"`
header while more pages exist, 404 for an unknown repository, 403 when told to play the rate limit.

    with FakeGitHub({"Dao-AILab/flash-attention": [release, ...]}, per_page=2) as gh:
        fetch_releases("Dao-AILab/flash-attention", api_url=gh.url)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.loopback import BackgroundServer, LoopbackHTTPServer, QuietHandler


def release(tag: str, assets: Sequence[tuple[str, str, str | None, int]], *, draft: bool = False) -> dict[str, Any]:
    """A release document: assets as (name, browser_download_url, sha256 or None, size)."""
    return {
        "tag_name": tag, "name": tag, "draft": draft, "prerelease": False,
        "assets": [{"name": name, "browser_download_url": url, "size": size, "state": "uploaded",
                    "digest": f"sha256:{sha}" if sha else None} for name, url, sha, size in assets],
    }


class _Handler(QuietHandler):
    server: _Server

    def do_GET(self) -> None:
        srv = self.server
        parts = urlsplit(self.path)
        with srv.lock:
            srv.requests.append((self.path, dict(self.headers.items())))
        segments = parts.path.strip("/").split("/")
        if srv.rate_limited:
            self._reply(403, {"message": "API rate limit exceeded"})
            return
        if len(segments) != 4 or segments[0] != "repos" or segments[3] != "releases":
            self._reply(404, {"message": "Not Found"})
            return
        repo = f"{segments[1]}/{segments[2]}"
        if repo not in srv.releases:
            self._reply(404, {"message": "Not Found"})
            return
        query = parse_qs(parts.query)
        per_page = min(int(query.get("per_page", ["30"])[0]), srv.per_page)
        page = int(query.get("page", ["1"])[0])
        items = list(srv.releases[repo])
        chunk = items[(page - 1) * per_page: page * per_page]
        headers = {}
        if page * per_page < len(items):
            nxt = f"http://127.0.0.1:{srv.server_address[1]}{parts.path}?per_page={per_page}&page={page + 1}"
            headers["Link"] = f'<{nxt}>; rel="next"'
        self._reply(200, chunk, headers)

    def _reply(self, code: int, doc: Any, headers: Mapping[str, str] | None = None) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


class _Server(LoopbackHTTPServer):
    def __init__(self, releases: Mapping[str, Sequence[Mapping[str, Any]]], per_page: int) -> None:
        super().__init__(_Handler)
        self.releases = dict(releases)
        self.per_page = per_page
        self.rate_limited = False


class FakeGitHub(BackgroundServer):
    def __init__(self, releases: Mapping[str, Sequence[Mapping[str, Any]]], *, per_page: int = 100) -> None:
        self._server: _Server = _Server(releases, per_page)
        super().__init__(self._server)

    @property
    def url(self) -> str:
        return self.base_url

    def rate_limit(self, on: bool = True) -> None:
        self._server.rate_limited = on
