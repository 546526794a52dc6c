"""Check a manifest's meaning: https URLs, parseable names, fields that agree with the names, no duplicates."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from vox1_setup.filenames import WheelNameError, filename_from_url, parse_wheel_name
from vox1_setup.manifest.model import EVIDENCE_ORDER, MANIFEST_SCHEMA, Manifest, WheelEntry, is_sha256, platform_os

_ARCH_RE = re.compile(r"^sm_\d{2,3}$")
_GLIBC_RE = re.compile(r"^\d+\.\d+$")


@dataclass(frozen=True)
class Problem:
    index: int | None  # entry index, None for the document
    filename: str | None
    code: str  # stable: "schema", "url", "filename", "mismatch", "sha256", "size", "evidence", "field", "duplicate"
    message: str

    def to_dict(self) -> dict[str, object]:
        return {"index": self.index, "filename": self.filename, "code": self.code, "message": self.message}


def _entry_problems(i: int, e: WheelEntry) -> list[Problem]:
    out: list[Problem] = []

    def add(code: str, message: str) -> None:
        out.append(Problem(i, e.filename, code, message))

    parts = urlsplit(e.url)
    if parts.scheme != "https" or not parts.netloc:
        add("url", f"url must be https: {e.url!r}")
    elif filename_from_url(e.url) != e.filename:
        add("url", f"url ends in {filename_from_url(e.url)!r}, not the file name")
    try:
        name = parse_wheel_name(e.filename)
    except WheelNameError as exc:
        add("filename", str(exc))
        return out
    if name.distribution.lower() != "flash_attn":
        add("filename", f"not a flash_attn wheel (distribution {name.distribution!r})")
    expected = {
        "flash_attn_version": name.public_version, "torch": name.torch, "torch_mm": name.torch_mm,
        "cuda": name.cuda, "cuda_major_only": name.cuda_major_only, "python_tag": name.python_tag,
        "abi_tag": name.abi_tag, "platform_tags": name.platform_tags,
    }
    for key, want in expected.items():
        have = getattr(e, key)
        if have != want:
            add("mismatch", f"{key} is {have!r} but the file name says {want!r}")
    if e.sha256 is not None and not is_sha256(e.sha256):
        add("sha256", f"sha256 must be 64 lower-case hex digits or null, got {e.sha256!r}")
    if e.size is not None and e.size <= 0:
        add("size", f"size must be a positive byte count or null, got {e.size}")
    if e.evidence not in EVIDENCE_ORDER:
        add("evidence", f"unknown evidence {e.evidence!r} (known: {', '.join(EVIDENCE_ORDER)})")
    if e.cxx11abi is not None and platform_os(e.platform_tags) != "linux":
        add("field", "cxx11abi must be null outside Linux")
    if e.min_glibc is not None and not _GLIBC_RE.match(e.min_glibc):
        add("field", f"min_glibc must look like '2.32', got {e.min_glibc!r}")
    if not e.gpu_archs or not all(_ARCH_RE.match(a) for a in e.gpu_archs):
        add("field", f"gpu_archs must be a non-empty list like ['sm_80', 'sm_90'], got {list(e.gpu_archs)}")
    if not e.source:
        add("field", "source is empty")
    return out


def validate_manifest(manifest: Manifest) -> list[Problem]:
    """Every problem found, in entry order (empty when the manifest is valid)."""
    problems: list[Problem] = []
    if manifest.schema != MANIFEST_SCHEMA:
        problems.append(Problem(None, None, "schema", f"schema is {manifest.schema!r}, expected {MANIFEST_SCHEMA!r}"))
    seen: dict[str, int] = {}
    for i, entry in enumerate(manifest.entries):
        problems.extend(_entry_problems(i, entry))
        key = unquote(entry.url)  # `%2B` and `+` name the same asset
        if key in seen:
            problems.append(Problem(i, entry.filename, "duplicate", f"same url as entry {seen[key]}"))
        else:
            seen[key] = i
    return problems
