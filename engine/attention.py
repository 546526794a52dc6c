"""Which attention implementation to use, decided from facts (pure: no torch, no I/O).

Every implementation gets a verdict: accepted, or rejected with each failed check, its reason and its fix.
`auto` tries flash_attention_2 → sdpa → eager in that order (transformers has no such "auto": `None`
means sdpa). A forced implementation that fails a check raises `AttentionUnavailableError` naming the
check and the fix. The loader then proves the choice by loading and running one forward step.

Sources for the checks: FIELD-NOTES.md §1 (capability ≥ 8.0, Blackwell needs FA ≥ 2.7.3, fp16/bf16 only,
head dim ≤ 256) and §6 (transformers checks neither capability nor the CUDA extension import).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from packaging.version import InvalidVersion, Version

from engine.errors import AttentionUnavailableError
from engine.settings import AttentionImpl, DType

AUTO_ORDER = (AttentionImpl.FLASH_ATTENTION_2, AttentionImpl.SDPA, AttentionImpl.EAGER)
FA2_MIN_CAPABILITY = (8, 0)
BLACKWELL_CAPABILITY = (10, 0)
FA2_MIN_FOR_BLACKWELL = Version("2.7.3")
FA2_MAX_HEAD_DIM = 256
FA2_DTYPES = (DType.FLOAT16, DType.BFLOAT16)


@dataclass(frozen=True)
class AttentionFacts:
    """What the target interpreter and its GPU can do (gathered once by `engine.facts`)."""

    torch_version: str | None = None
    torch_cuda: str | None = None  # torch.version.cuda; None on CPU builds
    cuda_available: bool = False
    device_name: str | None = None
    capability: tuple[int, int] | None = None
    flash_attn_version: str | None = None  # the installed distribution, None when absent
    flash_attn_import_error: str | None = None  # last line of the import error; None when it imports (or absent)

    def to_dict(self) -> dict[str, object]:
        return {
            "torch_version": self.torch_version,
            "torch_cuda": self.torch_cuda,
            "cuda_available": self.cuda_available,
            "device_name": self.device_name,
            "capability": ".".join(map(str, self.capability)) if self.capability else None,
            "flash_attn_version": self.flash_attn_version,
            "flash_attn_import_error": self.flash_attn_import_error,
        }


@dataclass(frozen=True)
class ModelSupport:
    """What the model class declares (`_supports_flash_attn`, `_supports_sdpa`) and its head size."""

    flash_attn: bool = True
    sdpa: bool = True
    head_dim: int | None = None
    model_class: str | None = None


@dataclass(frozen=True)
class FailedCheck:
    check: str
    reason: str
    fix: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"check": self.check, "reason": self.reason, "fix": self.fix}


@dataclass(frozen=True)
class Verdict:
    impl: AttentionImpl
    failed: tuple[FailedCheck, ...] = ()

    @property
    def accepted(self) -> bool:
        return not self.failed

    @property
    def reason(self) -> str:
        return "; ".join(f.reason for f in self.failed)

    def to_dict(self) -> dict[str, object]:
        return {"impl": self.impl.value, "accepted": self.accepted, "failed": [f.to_dict() for f in self.failed]}


@dataclass(frozen=True)
class AttentionPlan:
    requested: AttentionImpl
    verdicts: tuple[Verdict, ...]
    order: tuple[AttentionImpl, ...]  # accepted implementations to try, best first
    notes: tuple[str, ...] = field(default=())

    def verdict(self, impl: AttentionImpl) -> Verdict:
        return next(v for v in self.verdicts if v.impl is impl)

    def skipped(self) -> tuple[Verdict, ...]:
        """Rejected implementations that come before the first accepted one in the try order."""
        first = self.order[0] if self.order else None
        out = []
        for impl in (AUTO_ORDER if self.requested is AttentionImpl.AUTO else (self.requested,)):
            if impl is first:
                break
            out.append(self.verdict(impl))
        return tuple(out)

    def to_dict(self) -> dict[str, object]:
        return {"requested": self.requested.value, "order": [i.value for i in self.order],
                "verdicts": [v.to_dict() for v in self.verdicts], "notes": list(self.notes)}


def _version(text: str | None) -> Version | None:
    if not text:
        return None
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _fa2_checks(facts: AttentionFacts, device: str, dtype: DType, support: ModelSupport) -> list[FailedCheck]:
    failed: list[FailedCheck] = []
    if not support.flash_attn:
        failed.append(FailedCheck("model support", f"{support.model_class or 'this model'} does not support "
                                  "FlashAttention 2", "use sdpa"))
    if not facts.cuda_available:
        build = f"torch {facts.torch_version} is a CPU build" if facts.torch_version and not facts.torch_cuda \
            else "torch.cuda.is_available() is False"
        failed.append(FailedCheck("CUDA", f"no CUDA ({build})",
                                  "FlashAttention 2 needs an NVIDIA GPU and a CUDA build of torch; sdpa works here"))
    elif not device.startswith("cuda"):
        failed.append(FailedCheck("CUDA", f"no CUDA (device is set to {device})", "set device to cuda or auto"))
    cap = facts.capability
    if facts.cuda_available and cap is not None and cap < FA2_MIN_CAPABILITY:
        failed.append(FailedCheck(
            "GPU capability",
            f"{facts.device_name or 'the GPU'} has compute capability {cap[0]}.{cap[1]}; FlashAttention 2 needs 8.0 "
            "(Ampere) or newer",
            "use sdpa: on this GPU it already runs a memory-efficient kernel"))
    fa_version = _version(facts.flash_attn_version)
    if facts.flash_attn_version is None:
        failed.append(FailedCheck("flash_attn installed", "flash-attn is not installed in this Python",
                                  "run `vox1-setup install` to install the prebuilt wheel that fits"))
    elif facts.flash_attn_import_error:
        failed.append(FailedCheck("flash_attn_2_cuda import", f"flash-attn {facts.flash_attn_version} is installed "
                                  f"but its CUDA extension does not import: {facts.flash_attn_import_error}",
                                  "run `vox1-setup doctor` (or `vox1-setup explain-error`), then "
                                  "`vox1-setup install` to replace it with a matching wheel"))
    if (facts.cuda_available and cap is not None and cap >= BLACKWELL_CAPABILITY and fa_version is not None
            and fa_version.release < FA2_MIN_FOR_BLACKWELL.release):
        failed.append(FailedCheck(
            "Blackwell support", f"compute capability {cap[0]}.{cap[1]} needs flash-attn >= 2.7.3 built with CUDA "
            f">= 12.8; {facts.flash_attn_version} is installed",
            "run `vox1-setup install` to get a Blackwell-capable wheel"))
    if dtype not in FA2_DTYPES:
        failed.append(FailedCheck("dtype", f"FlashAttention 2 computes only float16/bfloat16, dtype is {dtype.value}",
                                  "set dtype to bfloat16 (or float16)"))
    if support.head_dim is not None and support.head_dim > FA2_MAX_HEAD_DIM:
        failed.append(FailedCheck("head dim", f"head dim {support.head_dim} > {FA2_MAX_HEAD_DIM}", "use sdpa"))
    return failed


def verdicts(facts: AttentionFacts, device: str, dtype: DType, support: ModelSupport) -> tuple[Verdict, ...]:
    sdpa_failed = [] if support.sdpa else [FailedCheck(
        "model support", f"{support.model_class or 'this model'} does not support sdpa", "use eager")]
    return (
        Verdict(AttentionImpl.FLASH_ATTENTION_2, tuple(_fa2_checks(facts, device, dtype, support))),
        Verdict(AttentionImpl.SDPA, tuple(sdpa_failed)),
        Verdict(AttentionImpl.EAGER, ()),
    )


def plan_attention(requested: AttentionImpl, facts: AttentionFacts, *, device: str, dtype: DType,
                   support: ModelSupport | None = None) -> AttentionPlan:
    """The ordered plan; raises AttentionUnavailableError when a forced implementation fails a check."""
    if dtype is DType.AUTO:
        raise ValueError("resolve dtype before planning (engine.runtime.resolve_dtype)")
    all_verdicts = verdicts(facts, device, dtype, support or ModelSupport())
    by_impl = {v.impl: v for v in all_verdicts}
    if requested is AttentionImpl.AUTO:
        order = tuple(impl for impl in AUTO_ORDER if by_impl[impl].accepted)
        return AttentionPlan(requested, all_verdicts, order)
    verdict = by_impl[requested]
    if not verdict.accepted:
        first = verdict.failed[0]
        fixes = "; ".join(dict.fromkeys(f.fix for f in verdict.failed if f.fix))
        raise AttentionUnavailableError(requested.value, first.check, verdict.reason,
                                        f"{fixes}; or set attention_implementation to auto" if fixes else
                                        "set attention_implementation to auto")
    return AttentionPlan(requested, all_verdicts, (requested,))


def describe(verdicts_: Sequence[Verdict]) -> list[str]:
    """One line per verdict, for logs and `--verbose` output."""
    return [f"{v.impl.value}: " + ("ok" if v.accepted else "skipped: " + v.reason) for v in verdicts_]
