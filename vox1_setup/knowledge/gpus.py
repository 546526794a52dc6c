"""GPU name → CUDA compute capability, and capability → architecture family.

Used when the driver cannot tell the capability itself: old `nvidia-smi` (before driver R510) refuses the
`compute_cap` query field, and `/proc/driver/nvidia/gpus/*/information` only gives the model name.

Sources: NVIDIA "CUDA GPUs - Compute Capability" (developer.nvidia.com/cuda-gpus), the per-architecture
tuning guides of the CUDA Toolkit documentation, and FIELD-NOTES §1.7 (Blackwell 10.0/10.3/12.0/12.1).
Names are matched on whole words after normalisation ("NVIDIA GeForce RTX 4070 Ti" → "rtx 4070 ti"); the
longest matching entry wins, so "RTX 4090 D" never falls back to a shorter, different model by accident.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    name: str  # "Ada Lovelace"
    first: tuple[int, int]  # lowest capability of the family
    last: tuple[int, int]


# Capability ranges per architecture (CUDA Toolkit docs). FA2 needs ≥ 8.0 (FIELD-NOTES §1.7).
FAMILIES: tuple[Family, ...] = (
    Family("Kepler", (3, 0), (3, 7)),
    Family("Maxwell", (5, 0), (5, 3)),
    Family("Pascal", (6, 0), (6, 2)),
    Family("Volta", (7, 0), (7, 2)),
    Family("Turing", (7, 5), (7, 5)),
    Family("Ampere", (8, 0), (8, 7)),
    Family("Ada Lovelace", (8, 9), (8, 9)),
    Family("Hopper", (9, 0), (9, 0)),
    Family("Blackwell", (10, 0), (12, 1)),
)

# (normalised model name, compute capability). Source: developer.nvidia.com/cuda-gpus.
GPU_CAPABILITIES: tuple[tuple[str, str], ...] = (
    # Blackwell
    ("b200", "10.0"), ("gb200", "10.0"), ("b100", "10.0"), ("b300", "10.3"), ("gb300", "10.3"),
    ("rtx 5090", "12.0"), ("rtx 5090 d", "12.0"), ("rtx 5080", "12.0"), ("rtx 5070 ti", "12.0"),
    ("rtx 5070", "12.0"), ("rtx 5060 ti", "12.0"), ("rtx 5060", "12.0"), ("rtx 5050", "12.0"),
    ("rtx pro 6000 blackwell", "12.0"), ("rtx pro 5000 blackwell", "12.0"), ("rtx pro 4500 blackwell", "12.0"),
    ("rtx pro 4000 blackwell", "12.0"), ("rtx pro 2000 blackwell", "12.0"), ("gb10", "12.1"),
    ("dgx spark", "12.1"),
    # Hopper
    ("h100", "9.0"), ("h200", "9.0"), ("h800", "9.0"), ("h20", "9.0"), ("gh200", "9.0"),
    # Ada Lovelace
    ("rtx 4090", "8.9"), ("rtx 4090 d", "8.9"), ("rtx 4080 super", "8.9"), ("rtx 4080", "8.9"),
    ("rtx 4070 ti super", "8.9"), ("rtx 4070 ti", "8.9"), ("rtx 4070 super", "8.9"), ("rtx 4070", "8.9"),
    ("rtx 4060 ti", "8.9"), ("rtx 4060", "8.9"), ("rtx 4050", "8.9"),
    ("rtx 6000 ada generation", "8.9"), ("rtx 5000 ada generation", "8.9"), ("rtx 4500 ada generation", "8.9"),
    ("rtx 4000 ada generation", "8.9"), ("rtx 4000 sff ada generation", "8.9"), ("rtx 3500 ada generation", "8.9"),
    ("rtx 2000 ada generation", "8.9"), ("l40s", "8.9"), ("l40", "8.9"), ("l4", "8.9"), ("l20", "8.9"),
    # Ampere
    ("a100", "8.0"), ("a800", "8.0"), ("a30", "8.0"),
    ("rtx 3090 ti", "8.6"), ("rtx 3090", "8.6"), ("rtx 3080 ti", "8.6"), ("rtx 3080", "8.6"),
    ("rtx 3070 ti", "8.6"), ("rtx 3070", "8.6"), ("rtx 3060 ti", "8.6"), ("rtx 3060", "8.6"),
    ("rtx 3050 ti", "8.6"), ("rtx 3050", "8.6"), ("rtx a6000", "8.6"), ("rtx a5500", "8.6"),
    ("rtx a5000", "8.6"), ("rtx a4500", "8.6"), ("rtx a4000", "8.6"), ("rtx a2000", "8.6"),
    ("rtx a1000", "8.6"), ("a40", "8.6"), ("a10", "8.6"), ("a10g", "8.6"), ("a16", "8.6"), ("a2", "8.6"),
    ("jetson agx orin", "8.7"), ("jetson orin nx", "8.7"), ("jetson orin nano", "8.7"), ("orin", "8.7"),
    # Turing
    ("titan rtx", "7.5"), ("rtx 2080 ti", "7.5"), ("rtx 2080 super", "7.5"), ("rtx 2080", "7.5"),
    ("rtx 2070 super", "7.5"), ("rtx 2070", "7.5"), ("rtx 2060 super", "7.5"), ("rtx 2060", "7.5"),
    ("gtx 1660 ti", "7.5"), ("gtx 1660 super", "7.5"), ("gtx 1660", "7.5"), ("gtx 1650 ti", "7.5"),
    ("gtx 1650 super", "7.5"), ("gtx 1650", "7.5"), ("gtx 1630", "7.5"), ("t4", "7.5"), ("t4g", "7.5"),
    ("quadro rtx 8000", "7.5"), ("quadro rtx 6000", "7.5"), ("quadro rtx 5000", "7.5"),
    ("quadro rtx 4000", "7.5"), ("quadro t2000", "7.5"), ("quadro t1000", "7.5"), ("t1000", "7.5"),
    ("t600", "7.5"), ("t400", "7.5"), ("mx550", "7.5"), ("mx450", "7.5"),
    # Volta
    ("v100", "7.0"), ("titan v", "7.0"), ("quadro gv100", "7.0"), ("jetson agx xavier", "7.2"),
    ("jetson xavier nx", "7.2"),
    # Pascal
    ("p100", "6.0"), ("quadro gp100", "6.0"), ("gtx 1080 ti", "6.1"), ("gtx 1080", "6.1"),
    ("gtx 1070 ti", "6.1"), ("gtx 1070", "6.1"), ("gtx 1060", "6.1"), ("gtx 1050 ti", "6.1"),
    ("gtx 1050", "6.1"), ("gt 1030", "6.1"), ("titan xp", "6.1"), ("titan x pascal", "6.1"), ("p40", "6.1"),
    ("p4", "6.1"), ("p6", "6.1"), ("quadro p6000", "6.1"), ("quadro p5000", "6.1"), ("quadro p4000", "6.1"),
    ("quadro p2000", "6.1"), ("quadro p1000", "6.1"), ("mx250", "6.1"), ("mx150", "6.1"),
    ("jetson tx2", "6.2"),
    # Maxwell and Kepler (only so that old cards are named correctly in reports)
    ("gtx 980 ti", "5.2"), ("gtx 980", "5.2"), ("gtx 970", "5.2"), ("gtx 960", "5.2"), ("gtx 950", "5.2"),
    ("titan x", "5.2"), ("m60", "5.2"), ("m40", "5.2"), ("m4", "5.2"), ("gtx 750 ti", "5.0"),
    ("gtx 750", "5.0"), ("jetson nano", "5.3"), ("k80", "3.7"), ("k40", "3.5"), ("gtx 780", "3.5"),
)

_NOISE = re.compile(r"\b(nvidia|geforce|tesla|laptop gpu|mobile|max-q|graphics|with max-q design|"
                    r"pcie|sxm\d?|nvl|hbm\d?e?|\d+\s?gb)\b")


def normalize_name(name: str) -> str:
    """'NVIDIA GeForce RTX 4070 Ti SUPER' → 'rtx 4070 ti super'; 'Tesla T4' → 't4'; 'NVIDIA A100-SXM4-80GB'
    → 'a100'."""
    text = name.lower().replace("-", " ").replace("_", " ")
    text = re.sub(r"[(),]", " ", text)
    text = _NOISE.sub(" ", text)
    return " ".join(text.split())


_TABLE = dict(GPU_CAPABILITIES)


def capability_for_name(name: str) -> str | None:
    """The compute capability of a GPU model name, or None when the table does not know it.

    Whole-word match: the longest table entry whose words appear consecutively in the name wins."""
    words = normalize_name(name).split()
    best: tuple[int, str] | None = None
    for key, cc in _TABLE.items():
        kw = key.split()
        for start in range(len(words) - len(kw) + 1):
            if words[start:start + len(kw)] == kw:
                if best is None or len(kw) > best[0]:
                    best = (len(kw), cc)
                break
    return best[1] if best else None


def parse_capability(cc: str | None) -> tuple[int, int] | None:
    if not cc:
        return None
    m = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", cc)
    return (int(m.group(1)), int(m.group(2))) if m else None


def family_for_capability(cc: str | None) -> str | None:
    """'8.9' → 'Ada Lovelace'; None when unknown."""
    cap = parse_capability(cc)
    if cap is None:
        return None
    for family in FAMILIES:
        if family.first <= cap <= family.last:
            return family.name
    return None


def runs_flash_attn_2(cc: str | None) -> bool | None:
    """FA2 kernels exist for sm_80 and newer (FIELD-NOTES §1.7); None when the capability is unknown."""
    cap = parse_capability(cc)
    return None if cap is None else cap >= (8, 0)
