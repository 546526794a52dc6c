"""Device and dtype from the settings and the facts (pure)."""

from __future__ import annotations

from engine.attention import AttentionFacts
from engine.errors import EngineInputError
from engine.settings import DType

BF16_MIN_CAPABILITY = (8, 0)  # bfloat16 runs natively from Ampere on


def resolve_device(setting: str, facts: AttentionFacts) -> str:
    """"auto" → cuda:0 when CUDA works, else cpu. A CUDA device without CUDA is an input error."""
    if setting == "auto":
        return "cuda:0" if facts.cuda_available else "cpu"
    if setting.startswith("cuda") and not facts.cuda_available:
        raise EngineInputError(f"device is set to {setting} but torch cannot use CUDA here",
                               "set device to auto or cpu, or install a CUDA build of torch")
    return "cuda:0" if setting == "cuda" else setting


def resolve_dtype(setting: DType, device: str, facts: AttentionFacts) -> DType:
    """"auto" → bfloat16 on Ampere+, float16 on older GPUs, float32 on CPU."""
    if setting is not DType.AUTO:
        return setting
    if not device.startswith("cuda"):
        return DType.FLOAT32
    cap = facts.capability
    return DType.BFLOAT16 if cap is not None and cap >= BF16_MIN_CAPABILITY else DType.FLOAT16
