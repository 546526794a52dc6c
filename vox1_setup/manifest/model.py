"""The manifest values: `WheelEntry` (one real wheel) and `Manifest` (all of them), and their JSON form."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict
from urllib.parse import urlsplit

from vox1_setup.errors import BadInputError
from vox1_setup.knowledge import abi as abi_rules
from vox1_setup.knowledge import arch as arch_rules
from vox1_setup.knowledge import glibc as glibc_rules

MANIFEST_SCHEMA = "vox1-wheels/1"

# Trust order of the catalog's evidence column (data/README.md): lower is better.
EVIDENCE_ORDER: dict[str, int] = {
    "listed": 0,
    "referenced": 1,
    "local-file": 1,
    "derived-from-workflow": 2,
    "derived-from-thirdparty-table": 2,
}
DERIVED_EVIDENCE = frozenset(e for e, rank in EVIDENCE_ORDER.items() if rank == 2)

_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


class WheelEntryDict(TypedDict):
    url: str
    filename: str
    sha256: str | None
    size: int | None
    flash_attn_version: str
    torch: str
    torch_mm: str
    cuda: str
    cuda_major_only: bool
    python_tag: str
    abi_tag: str
    platform_tags: list[str]
    cxx11abi: bool | None
    min_glibc: str | None
    gpu_archs: list[str]
    source: str
    evidence: str
    release: str | None
    notes: list[str]


@functools.lru_cache(maxsize=4096)
def _derived_keys(fields: tuple[str, str, str, bool, str | None, tuple[str, ...]]) -> dict[str, Any]:
    flash_attn_version, torch_mm, cuda, cuda_major_only, release, platform_tags = fields
    major, minor = _cuda_parts(cuda)
    return {"fa_key": _fa_key(flash_attn_version), "torch_key": _tuple2(torch_mm), "cuda_major": major,
            "cuda_minor": None if cuda_major_only else minor, "release_key": _release_key(release),
            "os": platform_os(platform_tags)}


@functools.lru_cache(maxsize=512)
def _fa_key(version: str) -> tuple[int, ...]:
    return arch_rules.fa_version_tuple(version)


@functools.lru_cache(maxsize=512)
def _cuda_parts(cuda: str) -> tuple[int, int | None]:
    parts = [int(p) for p in re.findall(r"\d+", cuda)[:2]] or [0]
    return parts[0], parts[1] if len(parts) > 1 else None


@functools.lru_cache(maxsize=512)
def _tuple2(text: str) -> tuple[int, int]:
    parts = [int(p) for p in re.findall(r"\d+", text)[:2]]
    return (parts[0], parts[1] if len(parts) > 1 else 0) if parts else (0, 0)


@functools.lru_cache(maxsize=1024)
def _release_key(tag: str | None) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", tag)) if tag else ()


def release_from_url(url: str) -> str | None:
    """'…/releases/download/v0.7.16/file.whl' -> 'v0.7.16'."""
    m = re.search(r"/releases/download/([^/]+)/[^/]+$", urlsplit(url).path)
    return m.group(1) if m else None


def source_from_url(url: str) -> str | None:
    """'https://github.com/mjun0812/…' -> 'mjun0812'."""
    parts = urlsplit(url)
    if parts.netloc.lower() != "github.com":
        return None
    owner = parts.path.strip("/").split("/", 1)[0]
    return owner or None


@dataclass(frozen=True)
class WheelEntry:
    """One prebuilt flash-attn wheel that exists (or very likely exists) at `url`."""

    url: str
    filename: str
    sha256: str | None
    size: int | None
    flash_attn_version: str  # public version from the name: "2.8.3", "2.8.3.post1"
    torch: str  # as labelled: "2.7" or "2.9.0"
    torch_mm: str  # "2.7"
    cuda: str  # as labelled: "12" (major-only) or "12.8"
    cuda_major_only: bool
    python_tag: str  # "cp311"
    abi_tag: str  # "cp311", "cp313t"
    platform_tags: tuple[str, ...]
    cxx11abi: bool | None  # effective (compiled) ABI; None on Windows or unknown
    min_glibc: str | None  # "2.32" where known
    gpu_archs: tuple[str, ...]  # cubins compiled in: ("sm_80", "sm_90", "sm_100", "sm_120")
    source: str  # "Dao-AILab", "mjun0812", "kingbri1", "oobabooga", "jllllll", or a builder's name
    evidence: str  # "listed", "referenced", "derived-from-workflow", "derived-from-thirdparty-table", "local-file"
    release: str | None = None  # the release tag in the URL ("v0.7.16"); re-releases carry newer tags
    notes: tuple[str, ...] = ()
    # Precomputed keys for the resolver (not serialized).
    fa_key: tuple[int, ...] = field(init=False, repr=False, compare=False)
    torch_key: tuple[int, int] = field(init=False, repr=False, compare=False)
    cuda_major: int = field(init=False, repr=False, compare=False)
    cuda_minor: int | None = field(init=False, repr=False, compare=False)
    release_key: tuple[int, ...] = field(init=False, repr=False, compare=False)
    os: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Few distinct values across thousands of entries: the parsers are cached. Written straight into
        # __dict__ (a frozen dataclass refuses setattr; these are derived, not state).
        self.__dict__.update(_derived_keys((self.flash_attn_version, self.torch_mm, self.cuda, self.cuda_major_only,
                                            self.release, self.platform_tags)))

    @property
    def base_version(self) -> str:
        """The version the installed metadata reports (an optional `+local` suffix aside): '2.8.3'."""
        return self.flash_attn_version

    @property
    def derived(self) -> bool:
        return self.evidence in DERIVED_EVIDENCE

    @property
    def evidence_rank(self) -> int:
        return EVIDENCE_ORDER.get(self.evidence, 3)

    @property
    def tag_triples(self) -> tuple[str, ...]:
        return tuple(f"{self.python_tag}-{self.abi_tag}-{p}" for p in self.platform_tags)

    @classmethod
    def from_filename(cls, filename: str, url: str | None = None, *, source: str | None = None,
                      evidence: str = "local-file", sha256: str | None = None,
                      size: int | None = None) -> WheelEntry:
        """Build an entry from a wheel file name alone (e.g. `install --wheel FILE`), deriving the effective ABI,
        minimum glibc and GPU architectures from the knowledge tables. Raises BadInputError."""
        from vox1_setup.filenames import WheelNameError, filename_from_url, parse_wheel_name  # not on resolve's path

        try:
            name = parse_wheel_name(filename_from_url(url) if url and not filename else filename)
        except WheelNameError as exc:
            raise BadInputError(str(exc), "flash-attn wheels are named like "
                                "flash_attn-2.8.3+cu12torch2.7cxx11abiTRUE-cp311-cp311-linux_x86_64.whl") from exc
        if name.distribution.lower() != "flash_attn":
            raise BadInputError(f"{name.filename}: not a flash_attn wheel (distribution {name.distribution!r})")
        if name.torch is None or name.cuda is None:
            raise BadInputError(f"{name.filename}: the name carries no +cuXXXtorchX.Y label, so its torch and CUDA "
                                "are unknown", "use a wheel whose name says which torch and CUDA it was built for")
        src = source or (source_from_url(url) if url else None) or "local"
        os_name = platform_os(name.platform_tags)
        rules_source: str | None = src
        if src not in abi_rules.KNOWN_BUILDERS:
            rules_source = abi_rules.builder_from_name(torch_label=name.torch, cuda_major_only=name.cuda_major_only,
                                                       abi_label=name.cxx11abi_label)
        abi, abi_why = abi_rules.wheel_abi(source=rules_source, os_name=os_name, torch=name.torch, cuda=name.cuda,
                                           cuda_major_only=name.cuda_major_only,
                                           flash_attn_version=name.public_version, label=name.cxx11abi_label)
        glibc, glibc_why = glibc_rules.wheel_min_glibc(source=rules_source, flash_attn_version=name.public_version,
                                                       platform_tags=name.platform_tags)
        notes: list[str] = []
        if abi is not None and name.cxx11abi_label is not None and abi != name.cxx11abi_label:
            notes.append(f"compiled C++11 ABI is {'TRUE' if abi else 'FALSE'} although the name says "
                         f"cxx11abi{'TRUE' if name.cxx11abi_label else 'FALSE'}: {abi_why}")
        if glibc is not None and glibc_why and glibc_why != "manylinux tag":
            notes.append(glibc_why)
        return cls(
            url=url or "", filename=name.filename, sha256=sha256, size=size,
            flash_attn_version=name.public_version, torch=name.torch, torch_mm=name.torch_mm or name.torch,
            cuda=name.cuda, cuda_major_only=name.cuda_major_only, python_tag=name.python_tag,
            abi_tag=name.abi_tag, platform_tags=name.platform_tags, cxx11abi=abi,
            min_glibc=None if glibc is None else f"{glibc[0]}.{glibc[1]}",
            gpu_archs=arch_rules.wheel_archs(source=rules_source, flash_attn_version=name.public_version,
                                             cuda=name.cuda, cuda_major_only=name.cuda_major_only),
            source=src, evidence=evidence, release=release_from_url(url) if url else None, notes=tuple(notes),
        )

    def to_dict(self) -> WheelEntryDict:
        return {
            "url": self.url, "filename": self.filename, "sha256": self.sha256, "size": self.size,
            "flash_attn_version": self.flash_attn_version, "torch": self.torch, "torch_mm": self.torch_mm,
            "cuda": self.cuda, "cuda_major_only": self.cuda_major_only, "python_tag": self.python_tag,
            "abi_tag": self.abi_tag, "platform_tags": list(self.platform_tags), "cxx11abi": self.cxx11abi,
            "min_glibc": self.min_glibc, "gpu_archs": list(self.gpu_archs), "source": self.source,
            "evidence": self.evidence, "release": self.release, "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "entry", *, checked: bool = True) -> WheelEntry:
        """Structural check only (types, required fields); `validate_manifest` checks the meaning.
        Exact type checks keep this fast: the bundled manifest has 4,000+ entries and loads on every command.
        `checked=False` is for the bundled manifest only, whose bytes the test suite validates."""
        for key, kind, optional in _FIELD_TYPES if checked else ():
            value = d.get(key)
            if value is None:
                if optional:
                    continue
                raise BadInputError(f"{where}.{key}: required field is missing")
            if type(value) is not kind:
                raise BadInputError(f"{where}.{key}: expected {_TYPE_NAMES[kind]}, got {json.dumps(value)}")
            if isinstance(value, list) and not all(type(v) is str for v in value):
                raise BadInputError(f"{where}.{key}: expected a list of strings")
        # Validated above, so skip the generated __init__ (19 frozen-field writes, ~10 µs per entry).
        values = dict(d)
        values["platform_tags"] = tuple(d["platform_tags"])
        values["gpu_archs"] = tuple(d["gpu_archs"])
        values["notes"] = tuple(d.get("notes") or ())
        if len(values) != len(_ALL_KEYS) or values.keys() != _ALL_KEYS:  # rare: checked only when needed
            for key in _OPTIONAL_KEYS:
                values.setdefault(key, None)
            for key in values.keys() - _ALL_KEYS:  # fields of a newer minor schema revision are ignored
                del values[key]
        entry = object.__new__(cls)
        entry.__dict__.update(values)
        entry.__post_init__()
        return entry


    def to_row(self) -> tuple[Any, ...]:
        """Every field, derived keys included, as a tuple in ROW_NAMES order (lists as tuples): the parse
        cache's form, rebuilt by `from_row` without parsing or deriving anything."""
        return tuple(self.__dict__[key] for key in ROW_NAMES)

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> WheelEntry:
        """Inverse of `to_row`, for rows this program wrote itself (the parse cache); no type checks."""
        if len(row) != len(ROW_NAMES):
            raise ValueError(f"expected {len(ROW_NAMES)} fields, got {len(row)}")
        entry = object.__new__(cls)
        object.__setattr__(entry, "__dict__", dict(zip(ROW_NAMES, row, strict=True)))
        return entry


# (key, exact type, optional). bool is checked as bool (never an int), cxx11abi is true/false/null.
_FIELD_TYPES: tuple[tuple[str, type, bool], ...] = (
    ("url", str, False), ("filename", str, False), ("sha256", str, True), ("size", int, True),
    ("flash_attn_version", str, False), ("torch", str, False), ("torch_mm", str, False), ("cuda", str, False),
    ("cuda_major_only", bool, False), ("python_tag", str, False), ("abi_tag", str, False),
    ("platform_tags", list, False), ("cxx11abi", bool, True), ("min_glibc", str, True), ("gpu_archs", list, False),
    ("source", str, False), ("evidence", str, False), ("release", str, True), ("notes", list, True),
)
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "a list"}
FIELD_NAMES: tuple[str, ...] = tuple(key for key, _, _ in _FIELD_TYPES)  # serialized fields, schema order
ROW_NAMES: tuple[str, ...] = (*FIELD_NAMES, "fa_key", "torch_key", "cuda_major", "cuda_minor", "release_key", "os")
_ALL_KEYS = frozenset(FIELD_NAMES)
_OPTIONAL_KEYS = tuple(key for key, _, optional in _FIELD_TYPES if optional)


@functools.lru_cache(maxsize=512)
def platform_os(platform_tags: tuple[str, ...]) -> str:
    first = platform_tags[0] if platform_tags else ""
    if first.startswith("win"):
        return "windows"
    if first.startswith("macosx"):
        return "darwin"
    if "linux" in first:
        return "linux"
    return "unknown"


@dataclass(frozen=True)
class Manifest:
    """All known wheels plus where they came from. `origin` is the file or URL it was loaded from."""

    entries: tuple[WheelEntry, ...]
    generated_from: Mapping[str, Any] = field(default_factory=dict)
    origin: str = "memory"
    schema: str = MANIFEST_SCHEMA
    # Indexes derived from `entries` by their users (e.g. the resolver's rule groups), built once per manifest.
    index_cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.entries)

    def by_url(self, url: str) -> WheelEntry | None:
        for entry in self.entries:
            if entry.url == url:
                return entry
        return None

    def by_filename(self, filename: str) -> tuple[WheelEntry, ...]:
        """Every copy of a file (mjun0812 re-releases the same file under newer tags), newest release first."""
        found = [e for e in self.entries if e.filename == filename]
        return tuple(sorted(found, key=lambda e: e.release_key, reverse=True))

    def to_dict(self) -> dict[str, Any]:
        return {"schema": self.schema, "generated_from": dict(self.generated_from),
                "entries": [e.to_dict() for e in self.entries]}


def is_sha256(text: str | None) -> bool:
    return text is not None and bool(_SHA_RE.match(text))
