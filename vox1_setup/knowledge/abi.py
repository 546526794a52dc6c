"""The effective C++11 ABI (`_GLIBCXX_USE_CXX11_ABI`) of torch builds and of flash-attn wheels, as data.

The `cxx11abi{TRUE|FALSE}` label in a wheel's name is not always what was compiled in. Sources:
FIELD-NOTES §1.5; PyTorch 2.6/2.7 release notes (the switch to the new ABI); Dao-AILab/flash-attention#1783
(v2.8.x torch-2.6 wheels are ABI 1 under both labels); the kingbri1 build scripts (label hard-coded).
Only Linux has the distinction: on Windows and macOS the answer is None ("not applicable").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

Version2 = tuple[int, int]


@dataclass(frozen=True)
class TorchAbiRule:
    """torch pip wheels in [torch_min, torch_max] built with CUDA ≥ cuda_min (None: any build) use `abi`."""

    torch_min: Version2
    torch_max: Version2
    cuda_min: Version2 | None
    abi: bool
    source: str


# First match wins. PyTorch pip wheels: ≤ 2.5 old ABI; 2.6 new ABI only for +cu126 (and the newer-CUDA
# builds derived from it); ≥ 2.7 new ABI everywhere (PyTorch 2.7 release notes, FIELD-NOTES §1.5).
TORCH_ABI_RULES: tuple[TorchAbiRule, ...] = (
    TorchAbiRule((0, 0), (2, 5), None, False, "PyTorch ≤ 2.5 pip wheels: _GLIBCXX_USE_CXX11_ABI=0"),
    TorchAbiRule((2, 6), (2, 6), (12, 6), True, "PyTorch 2.6 +cu126 pip wheels: built with the new ABI"),
    TorchAbiRule((2, 6), (2, 6), None, False, "PyTorch 2.6 +cu118/+cu124/CPU pip wheels: old ABI"),
    TorchAbiRule((2, 7), (99, 99), None, True, "PyTorch ≥ 2.7: new ABI for every build"),
)


@dataclass(frozen=True)
class WheelAbiRule:
    """A flash-attn wheel from `source` (None: any) for torch in [torch_min, torch_max] with flash-attn ≥ fa_min:
    its compiled ABI is `abi`, or "label" (the name is right), or "torch" (that of the torch it was built with)."""

    source: str | None
    torch_min: Version2
    torch_max: Version2
    fa_min: tuple[int, ...]
    abi: bool | str
    why: str


KNOWN_BUILDERS = frozenset({"Dao-AILab", "mjun0812", "kingbri1", "oobabooga", "jllllll"})

# First match wins; Linux only.
WHEEL_ABI_RULES: tuple[WheelAbiRule, ...] = (
    WheelAbiRule("Dao-AILab", (2, 7), (99, 99), (0,), True,
                 "official wheels for torch ≥ 2.7 are ABI 1 whatever the label says (FIELD-NOTES §1.5)"),
    WheelAbiRule("Dao-AILab", (2, 6), (2, 6), (2, 8, 0), True,
                 "official v2.8.x wheels for torch 2.6 are ABI 1 under both labels (Dao-AILab#1783)"),
    WheelAbiRule("Dao-AILab", (0, 0), (99, 99), (0,), "label", "older official wheels: the label is right"),
    WheelAbiRule("kingbri1", (0, 0), (99, 99), (0,), True,
                 "kingbri1 hard-codes cxx11abiFALSE in every name; its Linux wheels are ABI 1"),
    WheelAbiRule("mjun0812", (0, 0), (99, 99), (0,), "torch",
                 "mjun0812 names carry no label: the ABI of the torch pip wheel it was built against"),
    WheelAbiRule(None, (2, 7), (99, 99), (0,), True,
                 "built against torch ≥ 2.7, whose pip wheels are ABI 1 everywhere"),
    WheelAbiRule(None, (0, 0), (99, 99), (0,), "label", "other builders: trust the label, else the torch rule"),
)


def version2(text: str | None) -> Version2 | None:
    """'2.6.0+cu124' -> (2, 6); '12.8' -> (12, 8); '12' -> (12, 0)."""
    if not text:
        return None
    m = re.match(r"(\d+)(?:\.(\d+))?", text)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2) or 0)


def _fa_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text.split("+", maxsplit=1)[0])[:3])


def torch_pip_abi(torch_version: str, cuda: str | None) -> bool | None:
    """The ABI of the PyTorch pip wheel `torch_version` built with `cuda` (None: CPU build)."""
    tv = version2(torch_version)
    if tv is None:
        return None
    cv = version2(cuda)
    for rule in TORCH_ABI_RULES:
        if not rule.torch_min <= tv <= rule.torch_max:
            continue
        if rule.cuda_min is not None and (cv is None or cv < rule.cuda_min):
            continue
        return rule.abi
    return None


def torch_cuda_from_version(torch_version: str) -> str | None:
    """'2.6.0+cu124' -> '12.4'; '2.7.1' (no label) -> None."""
    m = re.search(r"\+cu(\d{3,4})\b", torch_version)
    if not m:
        return None
    digits = m.group(1)
    return f"{digits[:2]}.{int(digits[2:])}"


def effective_torch_abi(torch_version: str | None, cuda: str | None, reported: bool | None) -> bool | None:
    """What the target's torch really uses: the probed value wins; else the pip-wheel rule."""
    if reported is not None:
        return reported
    if not torch_version:
        return None
    return torch_pip_abi(torch_version, cuda or torch_cuda_from_version(torch_version))


def builder_from_name(*, torch_label: str, cuda_major_only: bool, abi_label: bool | None) -> str | None:
    """Whose naming scheme a bare file name follows (for files without a known source): official names carry
    a cxx11abi label with a two-part torch; mjun0812 names carry no label."""
    if abi_label is None:
        return "mjun0812"
    if torch_label.count(".") == 1:
        return "Dao-AILab"
    return None


def wheel_abi(*, source: str | None, os_name: str, torch: str | None, cuda: str | None, cuda_major_only: bool,
              flash_attn_version: str, label: bool | None) -> tuple[bool | None, str]:
    """The compiled ABI of a flash-attn wheel and the rule that decided it. None on non-Linux or unknown."""
    if os_name != "linux":
        return None, "not applicable outside Linux"
    tv = version2(torch)
    if tv is None:
        return label, "no torch label in the name"
    fa = _fa_tuple(flash_attn_version)
    for rule in WHEEL_ABI_RULES:
        if rule.source is not None and rule.source != source:
            continue
        if not rule.torch_min <= tv <= rule.torch_max or fa < rule.fa_min:
            continue
        if rule.abi == "label":
            if label is not None:
                return label, rule.why
            break
        if rule.abi == "torch":
            break
        return bool(rule.abi), rule.why
    # mjun0812's label is the nvcc used; its torch build is the pip wheel of the same CUDA major, so 2.6 with
    # nvcc ≥ 12.6 means the cu126 torch (new ABI). A major-only label says nothing about the torch build.
    return torch_pip_abi(torch or "", None if cuda_major_only else cuda), "the ABI of the torch pip wheel"
