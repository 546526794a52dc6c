"""Refresh a manifest from the GitHub releases API of the known wheel sources.

Split in two: `fetch_releases` talks HTTP (paginated, token optional), `update_from_releases` is pure and turns
release documents into a new manifest. Assets uploaded after 2025-06-03 carry `digest: "sha256:<hex>"`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote

from vox1_setup.errors import BadInputError, DownloadError
from vox1_setup.filenames import WheelNameError, parse_wheel_name
from vox1_setup.manifest.model import Manifest, WheelEntry, is_sha256

GITHUB_API = "https://api.github.com"

# The sources of the catalog (shared/data/README.md). jllllll and oobabooga are archived but still served.
KNOWN_REPOS: tuple[str, ...] = (
    "Dao-AILab/flash-attention",
    "mjun0812/flash-attention-prebuild-wheels",
    "kingbri1/flash-attention",
    "oobabooga/flash-attention",
    "jllllll/flash-attention",
)

MAX_PAGES = 50  # 5,000 releases per repo: a guard against a server that never stops paginating


@dataclass(frozen=True)
class UpdateResult:
    manifest: Manifest
    added: tuple[str, ...]  # urls of new entries
    checksums_added: int  # existing entries that gained a sha256
    promoted: int  # referenced/derived entries now seen in a release listing
    conflicts: tuple[str, ...]  # assets whose digest disagrees with the pinned sha256 (pins kept)
    skipped: int  # assets that are not flash_attn 2 wheels we can describe

    def summary(self) -> dict[str, Any]:
        return {"added": len(self.added), "checksums_added": self.checksums_added, "promoted": self.promoted,
                "conflicts": list(self.conflicts), "skipped": self.skipped, "entries": len(self.manifest)}


def _digest(asset: Mapping[str, Any]) -> str | None:
    digest = asset.get("digest")
    if isinstance(digest, str) and digest.startswith("sha256:"):
        value = digest.removeprefix("sha256:").lower()
        return value if is_sha256(value) else None
    return None


def update_from_releases(manifest: Manifest, releases: Mapping[str, Sequence[Mapping[str, Any]]]) -> UpdateResult:
    """Merge release documents (`GET /repos/{repo}/releases`, per repo) into the manifest. Pure."""
    index = {unquote(e.url): i for i, e in enumerate(manifest.entries)}
    entries = list(manifest.entries)
    new: dict[str, WheelEntry] = {}
    checksums = promoted = skipped = 0
    conflicts: list[str] = []
    for repo in sorted(releases):
        owner = repo.split("/", 1)[0]
        for release in releases[repo]:
            if not isinstance(release, Mapping) or release.get("draft"):
                continue
            for asset in release.get("assets") or ():
                if not isinstance(asset, Mapping):
                    continue
                name = str(asset.get("name", ""))
                url = str(asset.get("browser_download_url", ""))
                if not name.endswith(".whl") or not url.startswith("https://"):
                    continue
                sha = _digest(asset)
                size = asset.get("size") if isinstance(asset.get("size"), int) else None
                key = unquote(url)
                if key in index:
                    i = index[key]
                    old = entries[i]
                    changes: dict[str, Any] = {}
                    if sha and old.sha256 is None:
                        changes["sha256"] = sha
                        checksums += 1
                    elif sha and old.sha256 != sha:
                        conflicts.append(f"{old.filename}: release digest {sha} ≠ pinned {old.sha256}")
                    if size and old.size is None:
                        changes["size"] = size
                    if old.evidence != "listed":
                        changes["evidence"] = "listed"
                        changes["notes"] = tuple(n for n in old.notes if "existence unconfirmed" not in n)
                        promoted += 1
                    if changes:
                        entries[i] = replace(old, **changes)
                    continue
                if key in new:
                    continue
                try:
                    parsed = parse_wheel_name(name)
                    if parsed.distribution.lower() != "flash_attn":
                        skipped += 1
                        continue
                    new[key] = WheelEntry.from_filename(name, url, source=owner, evidence="listed", sha256=sha,
                                                        size=size)
                except (WheelNameError, BadInputError):
                    skipped += 1
    added = [new[k] for k in sorted(new)]
    generated = dict(manifest.generated_from)
    generated["updated_from"] = sorted(set(generated.get("updated_from", [])) | set(releases))
    result = Manifest(entries=tuple(entries) + tuple(added), generated_from=generated, origin=manifest.origin)
    return UpdateResult(manifest=result, added=tuple(e.url for e in added), checksums_added=checksums,
                        promoted=promoted, conflicts=tuple(conflicts), skipped=skipped)


def fetch_releases(repo: str, *, api_url: str = GITHUB_API, token: str | None = None,
                   timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every release of `repo` (all pages). Raises DownloadError with a hint on HTTP/network failures."""
    import requests

    headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
    token = token if token is not None else os.environ.get("GITHUB_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    url: str | None = f"{api_url.rstrip('/')}/repos/{repo}/releases?per_page=100"
    out: list[dict[str, Any]] = []
    with requests.Session() as session:
        for _ in range(MAX_PAGES):
            if url is None:
                break
            try:
                response = session.get(url, headers=headers, timeout=timeout)
            except requests.RequestException as exc:
                raise DownloadError(f"cannot reach the GitHub API for {repo}: {exc}",
                                    "`manifest update` needs the network; the bundled manifest still works") from exc
            if response.status_code in (403, 429):
                raise DownloadError(f"GitHub API refused {repo} (HTTP {response.status_code}: rate limit?)",
                                    "set GITHUB_TOKEN to a personal access token and retry")
            if response.status_code != 200:
                raise DownloadError(f"GitHub API error for {repo}: HTTP {response.status_code}",
                                    "check the repository name (owner/name)")
            try:
                page = response.json()
            except ValueError as exc:
                raise DownloadError(f"GitHub API answered {repo} with something that is not JSON") from exc
            if not isinstance(page, list):
                raise DownloadError(f"GitHub API answered {repo} with an unexpected document")
            out.extend(r for r in page if isinstance(r, dict))
            url = response.links.get("next", {}).get("url") if page else None
    return out
