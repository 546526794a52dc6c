"""Pick the one flash-attn wheel that will work on a machine, or explain precisely why none does (pure).

`resolve(env, manifest, options)` checks every manifest entry against every rule of FIELD-NOTES §1 and
returns a `Resolution`: each candidate accepted with a rank, or rejected with ALL its reasons (stable codes),
the best accepted one as `selected`, and advice computed from the manifest. No I/O, no subprocesses, no torch.
Rules and ranking are documented in docs/resolver.md.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from vox1_setup.environment import Environment, GpuInfo, derive_tags, environment_to_dict, platform_tags
from vox1_setup.errors import BadInputError
from vox1_setup.knowledge import abi as abi_rules
from vox1_setup.knowledge import arch as arch_rules
from vox1_setup.knowledge import drivers
from vox1_setup.knowledge import glibc as glibc_rules
from vox1_setup.knowledge.torch_builds import TorchBuild, torch_build_for
from vox1_setup.manifest.model import Manifest, WheelEntry

if TYPE_CHECKING:
    from packaging.specifiers import SpecifierSet

RESOLUTION_SCHEMA = "vox1-resolution/1"

# Stable reason codes (documented in docs/resolver.md; scripts match on them). Order = display order.
REASONS: dict[str, str] = {
    "no-torch": "torch is not installed in the target Python",
    "torch-import-error": "torch is installed but does not import",
    "no-cuda-torch": "torch is a CPU-only build",
    "rocm-torch": "torch is a ROCm build; these are CUDA wheels",
    "no-gpu": "no NVIDIA GPU was detected",
    "gpu-unsupported": "the GPU is older than Ampere (compute capability < 8.0)",
    "torch-gpu-arch": "the installed torch has no kernels for the GPU",
    "not-fa2": "FlashAttention 1.x, not FlashAttention 2",
    "flash-attn-version": "flash-attn version outside the requested specifier",
    "derived": "unconfirmed (derived) catalog row, not allowed",
    "platform": "built for another operating system or CPU architecture",
    "python-tag": "built for another Python version or ABI",
    "glibc": "needs a newer glibc than the system has",
    "torch-version": "built for another torch major.minor",
    "cuda-major": "built for another CUDA major than torch's",
    "cxx11abi": "compiled with the other C++11 ABI than torch",
    "driver-too-old": "the NVIDIA driver is too old for its CUDA",
    "gpu-arch": "has no kernels for the GPU's architecture",
}

CODE_BITS: dict[str, int] = {code: 1 << i for i, code in enumerate(REASONS)}

# Codes that say "nothing can fit this environment" (every candidate carries them).
ENV_CODES = frozenset({"no-torch", "torch-import-error", "no-cuda-torch", "rocm-torch", "no-gpu", "gpu-unsupported",
                       "torch-gpu-arch"})
# Codes a different torch build would fix.
TORCH_CODES = frozenset({"torch-version", "cuda-major", "cxx11abi"})

# Blackwell needs torch ≥ 2.7 with CUDA ≥ 12.8 and a driver ≥ 570 (FIELD-NOTES §1.7).
BLACKWELL_TORCH_MIN = (2, 7)
BLACKWELL_CUDA_MIN = (12, 8)
BLACKWELL_DRIVER_MIN = (570,)
SDPA_ADVICE = "FlashAttention 2 is optional: VOX-1 runs with attention on sdpa (PyTorch's own fused kernels)."


@dataclass(frozen=True)
class ResolveOptions:
    gpu_index: int | None = None  # the GPU the engine will use; None: all GPUs that can run FA2
    flash_attn_spec: str | None = None  # e.g. ">=2.7,<2.9" or "==2.8.3"
    allow_derived: bool = True  # use `derived-*` catalog rows when no listed/referenced wheel fits


@dataclass(frozen=True)
class Reason:
    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class Candidate(NamedTuple):
    """One wheel's verdict. A NamedTuple rather than a frozen dataclass: a resolve builds 4,000+ of them and a
    frozen dataclass's __init__ would be half of its run time."""

    entry: WheelEntry
    accepted: bool
    rank: int | None = None
    reasons: tuple[Reason, ...] = ()
    notes: tuple[str, ...] = ()
    mask: int = 0  # the reason codes as CODE_BITS

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(r.code for r in self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {"filename": self.entry.filename, "url": self.entry.url, "accepted": self.accepted,
                "rank": self.rank, "reasons": [r.to_dict() for r in self.reasons], "notes": list(self.notes)}


@dataclass(frozen=True)
class Resolution:
    selected: WheelEntry | None
    candidates: tuple[Candidate, ...]  # accepted by rank, then rejected in manifest order
    advice: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    why: str = ""
    target: str = ""  # one-line description of the environment decided for
    gpu_indices: tuple[int, ...] = ()  # the GPUs the decision was made for
    options: ResolveOptions = field(default_factory=ResolveOptions)
    manifest_origin: str = ""
    environment: Environment | None = None

    @property
    def accepted(self) -> tuple[Candidate, ...]:
        return tuple(c for c in self.candidates if c.accepted)

    @property
    def rejected(self) -> tuple[Candidate, ...]:
        return tuple(c for c in self.candidates if not c.accepted)

    def reason_counts(self) -> dict[str, int]:
        """How many candidates carry each reason code (a candidate counts once per code)."""
        masks = Counter(c.mask for c in self.candidates)  # a few hundred distinct masks
        return {code: n for code, bit in CODE_BITS.items() if (n := sum(k for m, k in masks.items() if m & bit))}

    def _candidate_dicts(self) -> list[dict[str, Any]]:
        # Reasons are shared objects (built once per distinct message): serialize each once.
        memo: dict[int, dict[str, str]] = {}
        out = []
        for c in self.candidates:
            reasons = []
            for r in c.reasons:
                d = memo.get(id(r))
                if d is None:
                    d = memo[id(r)] = r.to_dict()
                reasons.append(d)
            e = c.entry
            out.append({"filename": e.filename, "url": e.url, "accepted": c.accepted, "rank": c.rank,
                        "reasons": reasons, "notes": list(c.notes)})
        return out

    def to_dict(self, *, candidates: bool = True) -> dict[str, Any]:
        """The vox1-resolution/1 document (`candidates=False`: with an empty candidate list, for writers that
        serialize the 4,000 candidates themselves)."""
        selected = None
        if self.selected is not None:
            selected = dict(self.selected.to_dict())
            selected["rank"] = 1
        return {
            "schema": RESOLUTION_SCHEMA,
            "selected": selected,
            "why": self.why,
            "target": self.target,
            "gpu_indices": list(self.gpu_indices),
            "options": {"gpu_index": self.options.gpu_index, "flash_attn_spec": self.options.flash_attn_spec,
                        "allow_derived": self.options.allow_derived},
            "manifest": {"origin": self.manifest_origin, "entries": len(self.candidates)},
            "counts": {"accepted": len(self.accepted), "rejected": len(self.candidates) - len(self.accepted),
                       "reasons": self.reason_counts()},
            "candidates": self._candidate_dicts() if candidates else [],
            "advice": list(self.advice),
            "warnings": list(self.warnings),
            "environment": None if self.environment is None else environment_to_dict(self.environment),
        }


# --------------------------------------------------------------------------------------------------------------
# The environment, digested once


def _v2(text: str | None) -> tuple[int, int] | None:
    return abi_rules.version2(text)


def _fmt2(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


def _gpu_label(g: GpuInfo) -> str:
    cap = g.capability_tuple
    if cap is None:
        return f"GPU {g.index} ({g.name}, compute capability unknown)"
    return f"GPU {g.index} ({g.name}, {arch_rules.sm_name(cap)}, {arch_rules.family(cap)})"


def _abi_word(abi: bool) -> str:
    return "TRUE (new ABI)" if abi else "FALSE (old ABI)"


@dataclass
class _Target:
    """Facts the rules need, computed once per resolve."""

    env: Environment
    options: ResolveOptions
    env_reasons: tuple[Reason, ...]
    warnings: list[str]
    pyabi: frozenset[tuple[str, str]]
    platforms: frozenset[str]
    arch: str
    glibc: tuple[int, int] | None
    torch_mm: tuple[int, int] | None
    torch_cuda: tuple[int, int] | None
    torch_abi: bool | None
    driver: str | None
    driver_max_cuda: tuple[int, int] | None
    gpus: tuple[GpuInfo, ...]
    spec: SpecifierSet | None  # imported only when asked for: its regex costs milliseconds at import
    python_label: str
    platform_label: str
    message_cache: dict[tuple[Any, ...], Reason] = field(default_factory=dict)
    rule_cache: dict[tuple[Any, ...], tuple[tuple[Reason, ...], int]] = field(default_factory=dict)
    env_mask: int = 0

    def reason(self, key: tuple[Any, ...], build: Any) -> Reason:
        """Messages depend on a few fields only: build each distinct one once (the manifest has 4,000+ rows)."""
        found = self.message_cache.get(key)
        if found is None:
            found = Reason(key[0], build())
            self.message_cache[key] = found
        return found


def _machine_arch(env: Environment) -> str:
    arch = env.machine.lower()
    return {"amd64": "x86_64", "arm64": "aarch64", "x64": "x86_64"}.get(arch, arch)


def _select_gpus(env: Environment, options: ResolveOptions, warnings: list[str]) -> tuple[GpuInfo, ...]:
    gpus = env.gpus
    if not gpus and env.torch is not None and env.torch.devices:  # torch saw devices NVML did not report
        gpus = tuple(GpuInfo(index=d.index, name=d.name, compute_capability=d.capability or None)
                     for d in env.torch.devices)
    if options.gpu_index is not None:
        chosen = [g for g in gpus if g.index == options.gpu_index]
        if not chosen:
            have = ", ".join(_gpu_label(g) for g in gpus) or "none detected"
            raise BadInputError(f"there is no GPU with index {options.gpu_index} (GPUs: {have})",
                                "pick one of the listed indices with --gpu, or leave it out to decide for all")
        return tuple(chosen)
    capable = [g for g in gpus if (g.capability_tuple or (99, 0)) >= arch_rules.FA2_MIN_CAPABILITY]
    if capable and len(capable) < len(gpus):
        for g in gpus:
            if g not in capable:
                warnings.append(f"{_gpu_label(g)} cannot run FlashAttention 2 (needs compute capability ≥ 8.0): "
                                f"decided for GPU {', '.join(str(c.index) for c in capable)} only; keep the engine "
                                f"off GPU {g.index} or use sdpa there")
        return tuple(capable)
    return gpus


def _tag_sets(env: Environment) -> tuple[frozenset[tuple[str, str]], frozenset[str]]:
    """The target's (python tag, ABI tag) pairs and platform tags. Every interpreter/ABI pair is compatible with
    every platform tag (packaging builds the tag list as their product), so two small sets answer what the full
    list of ~900 tags would, without building it; probed tags are split as they are."""
    if env.python.tags:
        triples = [t.split("-", 2) for t in env.python.tags]
        return frozenset((p[0], p[1]) for p in triples), frozenset(p[2] for p in triples)
    one_platform = derive_tags(env.os, env.machine, None, env.python)  # on Linux: only linux_<arch>
    pairs = frozenset((p[0], p[1]) for p in (t.split("-", 2) for t in one_platform))
    return pairs, frozenset(platform_tags(env.os, env.machine, env.glibc)) | {"any"}


def _digest(env: Environment, options: ResolveOptions) -> _Target:
    warnings: list[str] = []
    env_reasons: list[Reason] = []
    pyabi, platforms = _tag_sets(env)
    torch = env.torch
    torch_mm = torch_cuda = None
    torch_abi = None
    if torch is None:
        env_reasons.append(Reason("no-torch", "torch is not installed in the target Python: flash-attn wheels are "
                                  "built for a specific torch"))
    elif torch.build == "unknown":
        env_reasons.append(Reason("torch-import-error", f"torch is installed but does not import: "
                                  f"{(torch.import_error or 'unknown error').splitlines()[0][:200]}"))
    elif torch.build == "rocm":
        env_reasons.append(Reason("rocm-torch", f"torch {torch.version} is a ROCm build (HIP {torch.hip}); "
                                  "these wheels are CUDA builds"))
    elif torch.build == "cpu":
        env_reasons.append(Reason("no-cuda-torch", f"torch {torch.version} is a CPU-only build "
                                  "(torch.version.cuda is None): flash-attn needs a CUDA build of torch"))
    else:
        torch_mm = torch.major_minor
        torch_cuda = _v2(torch.cuda)
        torch_abi = abi_rules.effective_torch_abi(torch.version, torch.cuda, torch.cxx11abi) \
            if env.os == "linux" else None

    driver = env.driver.version if env.driver else None
    driver_max = _v2(env.driver.cuda) if env.driver and env.driver.cuda else None
    if driver and driver_max is None:
        driver_max = drivers.max_cuda_for_driver(driver, env.os)

    gpus = _select_gpus(env, options, warnings)
    if not gpus:
        env_reasons.append(Reason("no-gpu", "no NVIDIA GPU was detected: FlashAttention 2 runs only on NVIDIA GPUs "
                                  "(Ampere or newer)"))
    else:
        old = [g for g in gpus if g.capability_tuple is not None
               and g.capability_tuple < arch_rules.FA2_MIN_CAPABILITY]
        for g in old:
            env_reasons.append(Reason("gpu-unsupported", f"{_gpu_label(g)} cannot run FlashAttention 2: it needs "
                                      "compute capability ≥ 8.0 (Ampere or newer)"))
        for g in gpus:
            cap = g.capability_tuple
            if cap is None:
                warnings.append(f"{_gpu_label(g)}: architecture checks skipped")
                continue
            if cap < arch_rules.BLACKWELL_MIN:
                continue
            if torch_mm is not None:
                arch_list = torch.arch_list if torch is not None else None
                if arch_list:
                    ok = arch_rules.runs_on(tuple(arch_list), cap)
                else:
                    ok = torch_mm >= BLACKWELL_TORCH_MIN and (torch_cuda or (0, 0)) >= BLACKWELL_CUDA_MIN
                if not ok:
                    env_reasons.append(Reason("torch-gpu-arch", f"torch {torch.version if torch else '?'} has no "
                                              f"kernels for {_gpu_label(g)}: Blackwell needs torch ≥ 2.7 built with "
                                              "CUDA ≥ 12.8 (e.g. a +cu128 build)"))
            if driver and drivers.parse_driver(driver) < BLACKWELL_DRIVER_MIN:
                env_reasons.append(Reason("driver-too-old", f"driver {driver} is too old for {_gpu_label(g)}: "
                                          "Blackwell needs driver ≥ 570"))
    if gpus and driver is None:
        warnings.append("the NVIDIA driver version is unknown: driver checks skipped")
    if env.os == "linux" and env.glibc is None:
        warnings.append("glibc version unknown: only plain linux_* wheels can be matched, glibc floors not checked")

    spec = parse_flash_attn_spec(options.flash_attn_spec) if options.flash_attn_spec else None

    py = env.python
    abi_suffix = "t" if py.gil_disabled else ""
    python_label = f"Python {py.major_minor[0]}.{py.major_minor[1]}{abi_suffix} " \
                   f"(cp{py.major_minor[0]}{py.major_minor[1]}-cp{py.major_minor[0]}{py.major_minor[1]}{abi_suffix})"
    arch = _machine_arch(env)
    platform_label = f"{env.os} {arch}" + (f" (glibc {env.glibc})" if env.os == "linux" and env.glibc else "")
    env_tuple = tuple(env_reasons)
    return _Target(env=env, options=options, env_reasons=env_tuple, env_mask=_mask(env_tuple), warnings=warnings,
                   pyabi=pyabi, platforms=platforms, arch=arch, glibc=env.glibc_tuple, torch_mm=torch_mm,
                   torch_cuda=torch_cuda, torch_abi=torch_abi, driver=driver, driver_max_cuda=driver_max, gpus=gpus,
                   spec=spec, python_label=python_label, platform_label=platform_label)


def parse_flash_attn_spec(text: str) -> SpecifierSet:
    """The flash-attn versions asked for (`--flash-attn` of resolve, install, download, manifest list).
    A bare version means exactly that version: '2.7.4' -> '==2.7.4', '2.7.*' -> '==2.7.*'. Raises BadInputError."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    wanted = text.strip()
    if wanted[:1].isdigit():  # no operator: PEP 440 would reject it, but people write versions like this
        wanted = "==" + wanted
    try:
        return SpecifierSet(wanted)
    except InvalidSpecifier as exc:
        raise BadInputError(f"invalid flash-attn version specifier {text!r}",
                            "use e.g. '2.8.3', '==2.8.3', '2.7.*', '>=2.7,<2.9' or '~=2.8.0'") from exc


def describe_target(env: Environment, gpus: Iterable[GpuInfo] = ()) -> str:
    """'torch 2.7.1+cu128 · Python 3.11 · linux x86_64 · glibc 2.35 · driver 570.86 (CUDA 12.8) · GPU 0 …'."""
    parts = []
    t = env.torch
    parts.append("no torch" if t is None else f"torch {t.version or '(broken)'}")
    parts.append(f"Python {env.python.version}{'t' if env.python.gil_disabled else ''}")
    parts.append(f"{env.os} {env.machine}")
    if env.glibc:
        parts.append(f"glibc {env.glibc}")
    if env.driver:
        parts.append(f"driver {env.driver.version}" + (f" (CUDA {env.driver.cuda})" if env.driver.cuda else ""))
    parts.extend(_gpu_label(g) for g in gpus)
    return " · ".join(parts)


# --------------------------------------------------------------------------------------------------------------
# The rules, one wheel at a time


def _platform_reasons(t: _Target, e: WheelEntry) -> list[Reason]:
    if any(p in t.platforms for p in e.platform_tags):
        out: list[Reason] = []
    else:
        floors = [glibc_rules.manylinux_floor(p) for p in e.platform_tags if p.endswith("_" + t.arch)]
        floor = min((f for f in floors if f is not None), default=None)
        if t.env.os == "linux" and floor is not None and t.glibc is not None and floor > t.glibc:
            return [t.reason(("glibc", floor, t.glibc), lambda: (
                f"needs glibc ≥ {_fmt2(floor)} (its manylinux tag); this system has {_fmt2(t.glibc)}"))]
        plats = ".".join(e.platform_tags)
        return [t.reason(("platform", plats), lambda: f"built for {plats}; this machine is {t.platform_label}")]
    if e.min_glibc and t.env.os == "linux" and t.glibc is not None:
        need = _v2(e.min_glibc)
        if need is not None and need > t.glibc:
            out.append(t.reason(("glibc", e.min_glibc, e.source, e.flash_attn_version[:3]), lambda: (
                f"needs GLIBC_{e.min_glibc}+ ({e.source} v{e.flash_attn_version[:3]}.x wheels, Dao-AILab#1708); "
                f"this system has {_fmt2(t.glibc)}: flash-attn 2.7.4.post1 or a manylinux wheel loads there"
                if e.source == "Dao-AILab" else
                f"needs glibc ≥ {e.min_glibc}; this system has {_fmt2(t.glibc)}")))
    return out


def _torch_reasons(t: _Target, e: WheelEntry) -> list[Reason]:
    out: list[Reason] = []
    torch = t.env.torch
    if t.torch_mm is None or torch is None:
        return out
    if e.torch_key != t.torch_mm:
        out.append(t.reason(("torch-version", e.torch_mm), lambda: (
            f"built for torch {e.torch_mm}; this torch is {torch.version} (a wheel for another torch minor fails "
            "with 'undefined symbol')")))
    if t.torch_cuda is not None and e.cuda_major != t.torch_cuda[0]:
        out.append(t.reason(("cuda-major", e.cuda_major), lambda: (
            f"built for CUDA {e.cuda_major}.x; torch {torch.version} uses CUDA {torch.cuda}")))
    if e.os == "linux" and e.cxx11abi is not None and t.torch_abi is not None and e.cxx11abi != t.torch_abi:
        out.append(t.reason(("cxx11abi", e.cxx11abi), lambda: (
            f"compiled with C++11 ABI {_abi_word(bool(e.cxx11abi))}; torch {torch.version} uses "
            f"{_abi_word(bool(t.torch_abi))} ('undefined symbol: _ZN3c105Error…' at import)")))
    return out


def _driver_reason(t: _Target, e: WheelEntry) -> Reason | None:
    if t.driver is None:
        return None
    max_label = f"{t.driver_max_cuda[0]}.{t.driver_max_cuda[1]}" if t.driver_max_cuda else None
    if drivers.driver_supports_cuda_major(t.driver, max_label, e.cuda_major, t.env.os):
        return None
    floor = drivers.major_floor(e.cuda_major, t.env.os)

    def build() -> str:
        have = f"driver {t.driver} supports CUDA {max_label} at most" if max_label else f"driver {t.driver}"
        need = f"driver ≥ {floor}" if floor else "a newer driver"
        return f"{have}; this wheel needs CUDA {e.cuda_major}.x ({need})"

    return t.reason(("driver-too-old", e.cuda_major), build)


def _gpu_reasons(t: _Target, e: WheelEntry) -> list[Reason]:
    out = []
    for g in t.gpus:
        cap = g.capability_tuple
        if cap is None or cap < arch_rules.FA2_MIN_CAPABILITY or arch_rules.runs_on(e.gpu_archs, cap):
            continue
        message = (f"has kernels for {', '.join(e.gpu_archs)} only, none for {_gpu_label(g)}"
                   + (": Blackwell needs flash-attn ≥ 2.7.3 compiled with CUDA ≥ 12.8 ('no kernel image is "
                      "available')" if cap >= arch_rules.BLACKWELL_MIN else ""))
        out.append(Reason("gpu-arch", message))
    return out


def _version_reasons(t: _Target, e: WheelEntry) -> list[Reason]:
    out = []
    if e.fa_key[:1] < (2,):
        out.append(t.reason(("not-fa2", e.flash_attn_version), lambda: (
            f"flash-attn {e.flash_attn_version} is FlashAttention 1; VOX-1 needs FlashAttention 2")))
    elif t.spec is not None:
        from packaging.version import InvalidVersion, Version  # only with a specifier: its regex costs ms

        try:
            ok = t.spec.contains(Version(e.flash_attn_version), prereleases=True)
        except InvalidVersion:
            ok = False
        if not ok:
            out.append(t.reason(("flash-attn-version", e.flash_attn_version), lambda: (
                f"flash-attn {e.flash_attn_version} is outside the requested {t.options.flash_attn_spec}")))
    if e.derived and not t.options.allow_derived:
        out.append(t.reason(("derived", e.evidence), lambda: (
            f"catalog evidence is {e.evidence} (existence unconfirmed) and derived rows are not allowed")))
    return out


def _tag_reasons(t: _Target, e: WheelEntry) -> list[Reason]:
    out = _platform_reasons(t, e)
    if (e.python_tag, e.abi_tag) not in t.pyabi:
        pair = f"{e.python_tag}-{e.abi_tag}"
        out.append(t.reason(("python-tag", pair), lambda: f"built for {pair}; the target is {t.python_label}"))
    return out


def _build_reasons(t: _Target, e: WheelEntry) -> list[Reason]:
    out = _torch_reasons(t, e)
    if t.torch_mm is not None:
        driver = _driver_reason(t, e)
        if driver is not None:
            out.append(driver)
    return out


def _codes_mask(codes: Iterable[str]) -> int:
    m = 0
    for code in codes:
        m |= CODE_BITS[code]
    return m


def _mask(reasons: tuple[Reason, ...]) -> int:
    return _codes_mask(r.code for r in reasons)


# The rules in four groups, each depending on a few fields only (its key): the manifest has 4,000+ rows but a
# few hundred distinct keys, so each group's verdict is computed once per distinct key.
_GROUP_RULES = (_version_reasons, _tag_reasons, _build_reasons, _gpu_reasons)


# The fields each group's rules read (attrgetter builds the key tuple in C).
_GROUP_KEYS = (operator.attrgetter("flash_attn_version", "evidence"),
               operator.attrgetter("platform_tags", "min_glibc", "source", "flash_attn_version", "python_tag",
                                   "abi_tag"),
               operator.attrgetter("torch_mm", "cuda_major", "os", "cxx11abi"),
               operator.attrgetter("gpu_archs"))


def _group_keys(e: WheelEntry) -> tuple[Any, ...]:
    return tuple(key(e) for key in _GROUP_KEYS)


Verdict = tuple[tuple[Reason, ...], int]  # every reason, and their codes as a bit mask (0: the wheel fits)


def _check(t: _Target, e: WheelEntry) -> Verdict:
    """Every reason this wheel cannot work here (empty: it fits), and their codes as a bit mask."""
    reasons = t.env_reasons
    mask = t.env_mask
    for g, (rule, key) in enumerate(zip(_GROUP_RULES, _group_keys(e), strict=True)):
        found = t.rule_cache.get((g, key))
        if found is None:
            r = tuple(rule(t, e))
            found = t.rule_cache[(g, key)] = (r, _mask(r))
        reasons += found[0]
        mask |= found[1]
    return reasons, mask


class _ManifestIndex(NamedTuple):
    """Built once per manifest: one representative entry per distinct group key, and for each entry the
    number of its combination of group keys (entries sharing all four share their verdict)."""

    reps: tuple[tuple[WheelEntry, ...], ...]  # per group: representatives, by group id
    combos: tuple[tuple[int, ...], ...]  # distinct combinations of group ids
    combo_of: tuple[int, ...]  # per entry: its combination


def _index(manifest: Manifest) -> _ManifestIndex:
    cached = manifest.index_cache.get("resolver")
    if isinstance(cached, _ManifestIndex):
        return cached
    entries = manifest.entries
    group_ids = []  # per group: each entry's group id, numbered by first appearance
    reps = []
    for key in _GROUP_KEYS:
        ids: dict[Any, int] = {}
        column = [ids.setdefault(k, len(ids)) for k in map(key, entries)]
        # group id -> index of its first entry (the last write wins, so write in reverse)
        first = dict(zip(reversed(column), range(len(column) - 1, -1, -1), strict=True))
        reps.append(tuple(entries[first[g]] for g in range(len(ids))))
        group_ids.append(column)
    combos: dict[tuple[int, ...], int] = {}
    combo_of = tuple(combos.setdefault(row, len(combos)) for row in zip(*group_ids, strict=True))
    index = _ManifestIndex(tuple(reps), tuple(combos), combo_of)
    manifest.index_cache["resolver"] = index
    return index


def _verdicts(t: _Target, index: _ManifestIndex) -> list[Verdict | None]:
    """The verdict of each combination of group keys (None: accepted)."""
    groups = [[(r, _mask(r)) for r in (tuple(rule(t, e)) for e in reps)]
              for rule, reps in zip(_GROUP_RULES, index.reps, strict=True)]
    v1, v2, v3, v4 = groups
    env_reasons, env_mask = t.env_reasons, t.env_mask
    out: list[Verdict | None] = []
    for a, b, c, d in index.combos:
        g1, g2, g3, g4 = v1[a], v2[b], v3[c], v4[d]
        mask = env_mask | g1[1] | g2[1] | g3[1] | g4[1]
        out.append((env_reasons + g1[0] + g2[0] + g3[0] + g4[0], mask) if mask else None)
    return out


def check_wheel(t: _Target, e: WheelEntry) -> tuple[Reason, ...]:
    """Every reason this wheel cannot work here (empty: it fits)."""
    return _check(t, e)[0]


def _notes(t: _Target, e: WheelEntry) -> tuple[str, ...]:
    notes = []
    if e.derived:
        notes.append(f"{e.evidence}: this file is expected to exist but was never seen in a release listing")
    if e.sha256 is None:
        notes.append("no published checksum: the sha256 is recorded on first download")
    if e.os == "linux" and e.cxx11abi is None:
        notes.append("C++11 ABI unknown: an import check after install decides")
    return tuple(notes)


# --------------------------------------------------------------------------------------------------------------
# Ranking


def _label_disagrees(e: WheelEntry) -> bool:
    if e.cxx11abi is None:
        return False
    return ("cxx11abiTRUE" in e.filename and not e.cxx11abi) or ("cxx11abiFALSE" in e.filename and e.cxx11abi)


def rank_key(t: _Target, e: WheelEntry) -> tuple[Any, ...]:
    """Smaller is better. docs/resolver.md, "Ranking"."""
    fa = e.fa_key + (0,) * (6 - len(e.fa_key))
    torch_minor = t.torch_cuda[1] if t.torch_cuda else 0
    cuda_distance = 0 if e.cuda_minor is None else abs(e.cuda_minor - torch_minor)
    old_glibc = t.glibc is not None and t.glibc < glibc_rules.OLD_GLIBC_BELOW
    plain_linux = old_glibc and all(p.startswith("linux_") for p in e.platform_tags)
    return (
        e.derived,  # derived rows only when nothing listed/referenced fits
        tuple(-x for x in fa),  # newest flash-attn
        cuda_distance,  # closest CUDA minor to torch's
        e.sha256 is None,  # known checksum first
        e.evidence_rank,  # listed > referenced > derived
        _label_disagrees(e),  # a name whose cxx11abi label tells the truth reads less confusingly
        plain_linux,  # manylinux over plain linux when glibc is old
        tuple(-x for x in e.release_key),  # newest re-release of the same file
        e.filename,
        e.url,
    )


# --------------------------------------------------------------------------------------------------------------
# Advice


def _torch_build(e: WheelEntry) -> TorchBuild | None:
    """The published torch build this wheel runs with (its CUDA major; on Linux its C++11 ABI)."""
    return torch_build_for(e.torch_key, e.cuda_major, None if e.cuda_major_only else e.cuda,
                           linux_abi=e.cxx11abi if e.os == "linux" else None)


def _torch_suggestion(e: WheelEntry) -> str:
    build = _torch_build(e)
    if build is not None:
        return str(build)
    # Only the CUDA major is certain: mjun0812's cuXYZ label is the nvcc used, not torch's CUDA.
    abi = f" with the C++11 ABI {_abi_word(e.cxx11abi)}" if e.os == "linux" and e.cxx11abi is not None else ""
    return f"torch {e.torch_mm}.x (a CUDA {e.cuda_major} build{abi})"


def _python_tag_version(tag: str) -> tuple[int, int]:
    """'cp312' -> (3, 12)."""
    digits = tag[2:]
    return (int(digits[0]), int(digits[1:])) if digits.isdigit() and len(digits) > 1 else (0, 0)


def _advice_when_none(t: _Target, rejected: list[Candidate]) -> list[str]:
    env_codes = {r.code for r in t.env_reasons}
    advice: list[str] = []
    torch = t.env.torch
    if "gpu-unsupported" in env_codes:
        for g in t.gpus:
            cap = g.capability_tuple
            if cap is not None and cap < arch_rules.FA2_MIN_CAPABILITY:
                advice.append(f"your GPU ({g.name}, {arch_rules.sm_name(cap)}, {arch_rules.family(cap)}) cannot run "
                              "FlashAttention 2: keep attention on sdpa")
    if "no-gpu" in env_codes:
        advice.append("no NVIDIA GPU was found: keep attention on sdpa (or eager on CPU)")
    # Without a GPU that runs FA2, a CUDA torch or a second resolve cannot make a wheel fit: say only what
    # VOX-1 itself needs.
    no_gpu = "no-gpu" in env_codes
    no_fa2_gpu = no_gpu or "gpu-unsupported" in env_codes
    if "no-torch" in env_codes:
        if no_gpu:
            advice.append("torch is not installed in the target Python: install VOX-1's torch (its CPU build serves "
                          "without an NVIDIA GPU)")
        elif no_fa2_gpu:
            advice.append("torch is not installed in the target Python: install VOX-1's torch (a CUDA build, so it "
                          "runs on the GPU with sdpa)")
        else:
            advice.append("install VOX-1's torch (a CUDA build) into the target Python first, then resolve again")
    if "torch-import-error" in env_codes:
        advice.append("torch does not import in the target Python: reinstall torch"
                      + ("" if no_fa2_gpu else ", then resolve again"))
    if "no-cuda-torch" in env_codes and torch is not None and not no_gpu:
        command = (f"pip install torch=={(torch.version or '').split('+')[0]} --index-url "
                   "https://download.pytorch.org/whl/cu128")
        if no_fa2_gpu:
            advice.append(f"torch {torch.version} is a CPU-only build: the CUDA build of the same version (e.g. "
                          f"{command}) runs on the GPU with sdpa; FlashAttention 2 still cannot")
        else:
            advice.append(f"torch {torch.version} is a CPU-only build: install the CUDA build of the same version "
                          f"(e.g. {command}), then resolve again")
    if "rocm-torch" in env_codes:
        advice.append("AMD/ROCm: no prebuilt CUDA wheel applies; keep attention on sdpa (ROCm's flash-attn must be "
                      "built from the ROCm fork)")
    if "torch-gpu-arch" in env_codes:
        advice.append("install torch ≥ 2.7 built with CUDA ≥ 12.8 (e.g. torch 2.7.1+cu128) so it runs on your "
                      "Blackwell GPU, then resolve again")
    if "driver-too-old" in env_codes:
        advice.append("update the NVIDIA driver to ≥ 570 (Blackwell), then resolve again")
    if env_codes - {"driver-too-old"}:
        advice.append(SDPA_ADVICE)
        return advice

    # Near misses: candidates whose reasons all lie in one fixable group (a few hundred distinct masks).
    by_mask: dict[int, list[Candidate]] = {}
    for c in rejected:
        by_mask.setdefault(c.mask, []).append(c)
    not_fa2 = CODE_BITS["not-fa2"]

    def only(allowed: frozenset[str]) -> list[Candidate]:
        outside = ~_codes_mask(allowed) | not_fa2
        found = [c for mask, group in by_mask.items() if not mask & outside for c in group]
        return sorted(found, key=lambda c: rank_key(t, c.entry))

    env = t.env
    torch_label = f"torch {torch.version}" if torch else "this torch"
    # A newer driver would work: usually the fix the user wants, so it comes first.
    driver_fix = only(frozenset({"driver-too-old"}))
    if driver_fix:
        e = driver_fix[0].entry
        floor = drivers.major_floor(e.cuda_major, env.os)
        max_cuda = f" supports CUDA {_fmt2(t.driver_max_cuda)} at most" if t.driver_max_cuda else " is too old"
        advice.append(f"driver {t.driver}{max_cuda}; flash-attn {e.flash_attn_version} for {torch_label} needs CUDA "
                      f"{e.cuda_major}.x (driver ≥ {floor}): update the NVIDIA driver, or use a torch built for an "
                      "older CUDA major")
    # A different torch would work: name the nearest torch that has a wheel for this Python and platform.
    torch_fix = only(TORCH_CODES | {"derived"})
    if torch_fix and torch is not None and t.torch_mm is not None:
        # Within one torch minor suggest a wheel that a published torch build runs (right CUDA major and ABI),
        # then the newest flash-attn with the newest explicit CUDA label.
        installable: dict[tuple[Any, ...], bool] = {}

        def suggestion_key(c: Candidate) -> tuple[Any, ...]:
            e = c.entry
            key = (e.torch_key, e.cuda_major, e.cuda, e.cuda_major_only, e.os, e.cxx11abi)
            if key not in installable:
                installable[key] = _torch_build(e) is not None
            return (e.derived, not installable[key], tuple(-x for x in e.fa_key), e.cuda_major_only, -e.cuda_major,
                    -(e.cuda_minor or 0))

        by_torch: dict[tuple[int, int], Candidate] = {}
        for c in sorted(torch_fix, key=suggestion_key):
            by_torch.setdefault(c.entry.torch_key, c)
        # Prefer the closest newer torch, else the newest older one.
        newer = sorted(k for k in by_torch if k >= t.torch_mm)
        pick = by_torch[newer[0]] if newer else by_torch[max(by_torch)]
        others = ", ".join(_fmt2(k) for k in sorted(by_torch) if k != pick.entry.torch_key)
        e = pick.entry
        if set(pick.codes) == {"cxx11abi"}:
            advice.append(
                f"{torch_label} uses the C++11 ABI {_abi_word(bool(t.torch_abi))}, but the wheels for torch "
                f"{e.torch_mm} use {_abi_word(bool(e.cxx11abi))} (e.g. {e.filename}): install the official PyTorch "
                "pip wheel of your torch version, whose ABI matches")
        build = _torch_build(e)
        advice.append(
            f"no wheel for {torch_label} + {t.python_label} on {t.platform_label}; {_torch_suggestion(e)} on the same "
            f"Python has flash-attn {e.flash_attn_version} (file {e.filename})"
            + (f": {build.pip_command}" if build is not None else "")
            + (f"; other torch versions with wheels here: {others}" if others else ""))
    glibc_fix = only(frozenset({"glibc"}))
    if glibc_fix:
        e = glibc_fix[0].entry
        advice.append(f"flash-attn {e.flash_attn_version} ({e.filename}) fits except for glibc: it needs "
                      f"{e.min_glibc or 'a newer glibc'}; this system has {env.glibc}. Upgrade the OS, or use torch "
                      "and Python versions that have a manylinux wheel")
    spec_fix = only(frozenset({"flash-attn-version"}))
    if spec_fix:
        versions = sorted({c.entry.flash_attn_version for c in spec_fix}, key=arch_rules.fa_version_tuple,
                          reverse=True)
        advice.append(f"no wheel matches --flash-attn {t.options.flash_attn_spec}; versions that fit this machine: "
                      f"{', '.join(versions[:8])}")
    derived_fix = only(frozenset({"derived"}))
    if derived_fix:
        advice.append(f"an unconfirmed (derived) wheel would fit: {derived_fix[0].entry.filename}; allow derived rows "
                      "to use it (its download may fail)")
    python_fix = only(frozenset({"python-tag"}))
    if python_fix:
        tags = sorted({f"{c.entry.python_tag}-{c.entry.abi_tag}" for c in python_fix})
        want = env.python.major_minor

        def distance(c: Candidate) -> tuple[int, bool]:
            have = _python_tag_version(c.entry.python_tag)
            return abs(have[1] - want[1]) + 10 * abs(have[0] - want[0]), have < want

        nearest = min(python_fix, key=distance).entry  # python_fix is in rank order: the best of the nearest
        advice.append(f"wheels for {torch_label} exist for other Pythons ({', '.join(tags)}), not {t.python_label}; "
                      f"the nearest: Python {'.'.join(map(str, _python_tag_version(nearest.python_tag)))} has "
                      f"flash-attn {nearest.flash_attn_version} (file {nearest.filename})")
    if only(frozenset({"gpu-arch"})):
        labels = ", ".join(_gpu_label(g) for g in t.gpus)
        advice.append(f"no wheel in the manifest has kernels for your GPU with this torch ({labels}): Blackwell "
                      "needs flash-attn ≥ 2.7.3 compiled with CUDA ≥ 12.8")
    if not advice:
        counts = Counter(code for c in rejected for code in c.codes)
        common = ", ".join(f"{code} ({n})" for code, n in counts.most_common(4))
        advice.append(f"nothing in the manifest fits {describe_target(env, t.gpus)}; most common reasons: {common}")
    advice.append(SDPA_ADVICE)
    return advice


def _advice_when_selected(t: _Target, best: Candidate, accepted: list[Candidate]) -> list[str]:
    e = best.entry
    advice = []
    if e.derived:
        advice.append("no listed or referenced wheel fits: this one comes from a derived catalog row (expected to "
                      "exist, never seen in a release listing); if its download fails, nothing else fits")
    if e.sha256 is None:
        advice.append("no published checksum for this file: its sha256 is recorded on first download")
    installed = t.env.flash_attn
    if installed is not None:
        public = installed.version.split("+", 1)[0]
        if public == e.base_version:
            advice.append(f"flash-attn {installed.version} is already installed in the target: `vox1-setup doctor` "
                          "checks that it imports and computes")
        else:
            advice.append(f"the target has flash-attn {installed.version}; installing replaces it with "
                          f"{e.base_version}")
    if t.options.gpu_index is not None:
        for g in t.env.gpus:
            if g.index == t.options.gpu_index:
                continue
            cap = g.capability_tuple
            if cap is None:
                continue
            if cap < arch_rules.FA2_MIN_CAPABILITY:
                t.warnings.append(f"{_gpu_label(g)} cannot run FlashAttention 2: keep the engine on GPU "
                                  f"{t.options.gpu_index} or use sdpa on GPU {g.index}")
            elif not arch_rules.runs_on(e.gpu_archs, cap):
                t.warnings.append(f"the selected wheel has no kernels for {_gpu_label(g)}: FA2 works on GPU "
                                  f"{t.options.gpu_index} only")
    return advice


def _why(t: _Target, best: Candidate | None, n_accepted: int, n_total: int) -> str:
    if best is None:
        return f"no wheel fits ({n_total} checked)"
    e = best.entry
    torch = t.env.torch
    cuda = torch.cuda if torch else "?"
    return (f"newest flash-attn ({e.flash_attn_version}) for torch {t.torch_mm and _fmt2(t.torch_mm)} + CUDA "
            f"{cuda} + {e.python_tag}-{e.abi_tag} on {t.platform_label}; {n_accepted} of {n_total} wheels fit")


# --------------------------------------------------------------------------------------------------------------


def resolve(env: Environment, manifest: Manifest, options: ResolveOptions | None = None) -> Resolution:
    """Check every wheel, rank the ones that fit, pick the best, explain the rest. Pure."""
    options = options or ResolveOptions()
    t = _digest(env, options)
    index = _index(manifest)
    verdicts = _verdicts(t, index)
    accepted: list[WheelEntry] = []
    rejected: list[Candidate] = []
    make = tuple.__new__  # Candidate's own __new__ is a Python-level wrapper: 4,000 calls add up
    for e, combo in zip(manifest.entries, index.combo_of, strict=True):
        verdict = verdicts[combo]
        if verdict is None:
            accepted.append(e)
        else:
            rejected.append(make(Candidate, (e, False, None, verdict[0], (), verdict[1])))
    accepted.sort(key=lambda e: rank_key(t, e))
    ranked = [Candidate(entry=e, accepted=True, rank=i, notes=_notes(t, e)) for i, e in enumerate(accepted, 1)]
    best = ranked[0] if ranked else None
    advice = _advice_when_selected(t, best, ranked) if best else _advice_when_none(t, rejected)
    return Resolution(
        selected=best.entry if best else None,
        candidates=tuple(ranked) + tuple(rejected),
        advice=tuple(advice),
        warnings=tuple(dict.fromkeys(t.warnings)),
        why=_why(t, best, len(ranked), len(manifest.entries)),
        target=describe_target(env, t.gpus),
        gpu_indices=tuple(g.index for g in t.gpus),
        options=options,
        manifest_origin=manifest.origin,
        environment=env,
    )


def resolve_wheel_file(env: Environment, entry_or_filename: WheelEntry | str,
                       options: ResolveOptions | None = None) -> Candidate:
    """Check one wheel (an entry, or a file name/path such as `install --wheel FILE`) against the environment.
    Accepted candidates carry rank 1; rejected ones carry every reason."""
    if isinstance(entry_or_filename, WheelEntry):
        entry = entry_or_filename
    else:
        name = entry_or_filename.replace("\\", "/").rsplit("/", 1)[-1]
        entry = WheelEntry.from_filename(name)
    t = _digest(env, options or ResolveOptions(allow_derived=True))
    reasons, mask = _check(t, entry)
    if reasons:
        return Candidate(entry=entry, accepted=False, reasons=reasons, mask=mask)
    return Candidate(entry=entry, accepted=True, rank=1, notes=_notes(t, entry))
