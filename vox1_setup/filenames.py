"""Parse a flash-attn wheel file name into its parts (pure).

The naming schemes are in FIELD-NOTES §2: official `flash_attn-{V}+cu{MAJOR}torch{M.m}cxx11abi{TRUE|FALSE}-…`,
mjun0812 `flash_attn-{V}+cu{XYZ}torch{M.m}-…`, kingbri1/oobabooga `…+cu128torch2.9.0cxx11abiFALSE-…`.
The local label is parsed case-sensitively here because `packaging.utils.parse_wheel_filename` lower-cases it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from packaging.utils import InvalidWheelFilename
from packaging.utils import parse_wheel_filename as _packaging_parse
from packaging.version import InvalidVersion, Version

_WHEEL_RE = re.compile(
    r"^(?P<name>[A-Za-z0-9_.]+?)-(?P<version>[^-]+?)(?:-(?P<build>\d[^-]*))?"
    r"-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$"
)
_LOCAL_RE = re.compile(r"^cu(?P<cuda>\d{2,4})torch(?P<torch>\d+\.\d+(?:\.\d+)?)(?:cxx11abi(?P<abi>TRUE|FALSE))?$")


class WheelNameError(ValueError):
    """The text is not a flash-attn wheel file name we understand."""


@dataclass(frozen=True)
class WheelName:
    """What a flash-attn wheel's file name says about it."""

    filename: str
    distribution: str  # "flash_attn"
    version: str  # full version incl. local label: "2.8.3+cu12torch2.7cxx11abiTRUE"
    public_version: str  # "2.8.3": what is compared and what the installed metadata reports
    local: str | None  # "cu12torch2.7cxx11abiTRUE"
    cuda: str | None  # "12" (major-only label) or "12.8"
    cuda_major_only: bool
    torch: str | None  # as labelled: "2.7" or "2.9.0"
    cxx11abi_label: bool | None  # the label in the name (not always the compiled ABI)
    python_tag: str  # "cp311"
    abi_tag: str  # "cp311" / "cp313t"
    platform_tags: tuple[str, ...]  # compressed sets expanded: ("manylinux_2_24_x86_64", "manylinux_2_28_x86_64")

    @property
    def torch_mm(self) -> str | None:
        if self.torch is None:
            return None
        return ".".join(self.torch.split(".")[:2])


def cuda_from_label(digits: str) -> tuple[str, bool]:
    """'12' -> ('12', major-only); '128' -> ('12.8', False); '118' -> ('11.8', False); '1210' -> ('12.10', False)."""
    if len(digits) == 2:
        return digits, True
    return f"{digits[:2]}.{int(digits[2:])}", False


def filename_from_url(url: str) -> str:
    """The last path segment, with `%2B` decoded to `+`."""
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1])


def parse_wheel_name(filename: str) -> WheelName:
    """Parse a wheel file name (a URL's last segment is accepted too). Raises WheelNameError."""
    name = unquote(filename.rsplit("/", 1)[-1])
    m = _WHEEL_RE.match(name)
    if not m:
        raise WheelNameError(f"{name!r} is not a wheel file name (expected name-version-python-abi-platform.whl)")
    try:
        _packaging_parse(name)
    except InvalidWheelFilename as exc:
        raise WheelNameError(f"{name!r}: {exc}") from exc
    version = m.group("version")
    try:
        Version(version)
    except InvalidVersion as exc:
        raise WheelNameError(f"{name!r}: invalid version {version!r}") from exc
    public, _, local = version.partition("+")
    cuda: str | None = None
    major_only = False
    torch: str | None = None
    abi_label: bool | None = None
    if local:
        lm = _LOCAL_RE.match(local)
        if lm:
            cuda, major_only = cuda_from_label(lm.group("cuda"))
            torch = lm.group("torch")
            abi_label = None if lm.group("abi") is None else lm.group("abi") == "TRUE"
    return WheelName(
        filename=name,
        distribution=m.group("name"),
        version=version,
        public_version=public,
        local=local or None,
        cuda=cuda,
        cuda_major_only=major_only,
        torch=torch,
        cxx11abi_label=abi_label,
        python_tag=m.group("py"),
        abi_tag=m.group("abi"),
        platform_tags=tuple(m.group("plat").split(".")),
    )
