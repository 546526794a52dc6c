"""Build a manifest from the wheel catalog TSV (`shared/data/flash-attn-wheels.tsv`), reproducibly.

Same input bytes → same manifest bytes: entries keep the catalog's row order, nothing depends on time or paths.
The catalog's `cxx11abi` column already holds the effective ABI and wins over the rules; GPU architectures and
minimum glibc come from the knowledge tables.
"""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

from vox1_setup.errors import BadInputError
from vox1_setup.filenames import WheelNameError, filename_from_url, parse_wheel_name
from vox1_setup.knowledge import abi as abi_rules
from vox1_setup.knowledge import arch as arch_rules
from vox1_setup.knowledge import glibc as glibc_rules
from vox1_setup.manifest.model import (
    DERIVED_EVIDENCE,
    EVIDENCE_ORDER,
    Manifest,
    WheelEntry,
    platform_os,
    release_from_url,
)

COLUMNS = ("source", "flash_attn_version", "torch", "cuda", "python_tag", "platform_tag", "cxx11abi", "filename",
           "url", "sha256", "evidence")

_EVIDENCE_NOTES = {
    "derived-from-workflow": "expanded from the official release workflow matrix: existence unconfirmed",
    "derived-from-thirdparty-table": "from a public compatibility table: existence unconfirmed",
}


def entry_from_row(row: dict[str, str], where: str) -> WheelEntry:
    """One catalog row → one entry. Raises BadInputError naming the row."""
    try:
        name = parse_wheel_name(row["filename"])
    except WheelNameError as exc:
        raise BadInputError(f"{where}: {exc}") from exc
    url = row["url"]
    if filename_from_url(url) != name.filename:
        raise BadInputError(f"{where}: url does not end in the file name {name.filename!r}")
    if row["evidence"] not in EVIDENCE_ORDER:
        raise BadInputError(f"{where}: unknown evidence {row['evidence']!r}")
    py, _, abi_tag = row["python_tag"].partition("-")
    platforms = tuple(row["platform_tag"].split("."))
    source = row["source"]
    fa = row["flash_attn_version"]
    cuda = row["cuda"]
    major_only = "." not in cuda
    os_name = platform_os(platforms)
    label_abi = row["cxx11abi"].strip().upper()
    cxx11abi = None if os_name != "linux" or not label_abi else label_abi == "TRUE"

    notes: list[str] = []
    if cxx11abi is not None and name.cxx11abi_label is not None and cxx11abi != name.cxx11abi_label:
        _, why = abi_rules.wheel_abi(source=source, os_name=os_name, torch=row["torch"], cuda=cuda,
                                     cuda_major_only=major_only, flash_attn_version=fa, label=name.cxx11abi_label)
        notes.append(f"compiled C++11 ABI is {label_abi} although the name says "
                     f"cxx11abi{'TRUE' if name.cxx11abi_label else 'FALSE'}: {why}")
    if os_name == "linux" and cxx11abi is None:
        notes.append("C++11 ABI unknown: checked by importing it after install")
    glibc, glibc_why = glibc_rules.wheel_min_glibc(source=source, flash_attn_version=fa, platform_tags=platforms)
    if glibc is not None and glibc_why != "manylinux tag" and glibc_why:
        notes.append(glibc_why)
    release = release_from_url(url)
    if release and source == "Dao-AILab" and release.lstrip("v") != fa:
        notes.append(f"published under release {release}, file name says {fa}")
    if row["evidence"] in DERIVED_EVIDENCE:
        notes.append(_EVIDENCE_NOTES[row["evidence"]])
    sha = row["sha256"].strip().lower() or None
    return WheelEntry(
        url=url, filename=name.filename, sha256=sha, size=None, flash_attn_version=fa, torch=row["torch"],
        torch_mm=".".join(row["torch"].split(".")[:2]), cuda=cuda, cuda_major_only=major_only, python_tag=py,
        abi_tag=abi_tag, platform_tags=platforms, cxx11abi=cxx11abi,
        min_glibc=None if glibc is None else f"{glibc[0]}.{glibc[1]}",
        gpu_archs=arch_rules.wheel_archs(source=source, flash_attn_version=fa, cuda=cuda, cuda_major_only=major_only),
        source=source, evidence=row["evidence"], release=release, notes=tuple(notes),
    )


def build_from_tsv_bytes(data: bytes, name: str) -> Manifest:
    text = data.decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise BadInputError(f"{name}: unexpected columns {reader.fieldnames}", f"expected: {' '.join(COLUMNS)}")
    entries: list[WheelEntry] = []
    seen: dict[str, int] = {}
    problems: list[str] = []
    for line, row in enumerate(reader, start=2):
        where = f"{name} line {line}"
        try:
            entry = entry_from_row(row, where)
        except BadInputError as exc:
            problems.append(exc.message)
            continue
        if entry.url in seen:
            problems.append(f"{where}: duplicate url (first on line {seen[entry.url]})")
            continue
        seen[entry.url] = line
        entries.append(entry)
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise BadInputError(f"{name}: {len(problems)} bad row(s):\n  {shown}{more}", "fix the catalog rows")
    generated = {"catalog": name, "catalog_sha256": hashlib.sha256(data).hexdigest(), "rows": len(entries)}
    return Manifest(entries=tuple(entries), generated_from=generated, origin=name)


def build_from_tsv(path: Path) -> Manifest:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInputError(f"cannot read catalog {path}: {exc.strerror or exc}") from exc
    return build_from_tsv_bytes(data, path.name)
