"""Error text → cause → fix: the one matcher shared by `verify`, `doctor` and `explain-error`.

Pure. The rules are a data table built from the error texts of FIELD-NOTES §5 (public flash-attention,
PyTorch and transformers threads). Each rule has a stable cause id that scripts and the JSON reports rely on;
the table order is the priority order, most specific text first, so a traceback that contains several
known fragments gets the most telling one. An `Environment`, when given, only sharpens the wording of the fix
(which ABI, which torch, which Python); it never changes which rule matched, except where the text alone
cannot tell two causes apart ("not a supported wheel": Python tag or platform tag).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from vox1_setup.environment import Environment

# Stable cause ids (documented in docs/doctor.md; never rename, only add).
CAUSES: tuple[str, ...] = (
    "abi-mismatch",
    "torch-mismatch",
    "cuda-mismatch",
    "driver-too-old",
    "driver-missing",
    "glibc-too-old",
    "libstdcxx-too-old",
    "gpu-unsupported",
    "gpu-arch-missing",
    "dll-missing",
    "python-mismatch",
    "platform-mismatch",
    "dtype",
    "head-dim",
    "source-build",
    "torch-missing",
    "torch-cpu",
    "flash-attn-missing",
    "flash-attn-too-old",
    "fa2-refused",
    "out-of-memory",
)


@dataclass(frozen=True)
class Diagnosis:
    """What an error text means: a stable cause id, a one-line summary, the fix, and the fragment that matched."""

    cause: str
    summary: str
    fix: str
    matched: str


@dataclass(frozen=True)
class Rule:
    cause: str
    pattern: re.Pattern[str]
    summary: str
    fix: str
    # Sharpens summary/fix from the match and the environment; returns the final diagnosis.
    refine: Callable[[Diagnosis, re.Match[str], str, Environment | None], Diagnosis] | None = None


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE | re.DOTALL)


# Text that shows a pip/setup.py build is running (so "No module named 'torch'" means build isolation).
_BUILD_CONTEXT = _rx(
    r"Guessing wheel URL|Building wheel for flash[-_]attn|Getting requirements to build wheel|"
    r"Preparing metadata \(pyproject\.toml\)|setup\.py|subprocess-exited-with-error|metadata-generation-failed|"
    r"Failed to build flash[-_]attn|Failed building wheel for flash[-_]attn|Building from source"
)


def _torch_abi(env: Environment | None) -> bool | None:
    return env.torch.cxx11abi if env is not None and env.torch is not None else None


def _abi_fix(wheel_abi: bool | None) -> Callable[[Diagnosis, re.Match[str], str, Environment | None], Diagnosis]:
    """`wheel_abi`: the C++11 ABI the failing wheel was built with, as told by the mangled symbol."""

    def refine(d: Diagnosis, _m: re.Match[str], _text: str, env: Environment | None) -> Diagnosis:
        torch_abi = _torch_abi(env)
        if torch_abi is None and wheel_abi is not None:
            torch_abi = not wheel_abi
        if torch_abi is None:
            return d
        label = "TRUE" if torch_abi else "FALSE"
        return replace(d, fix=(f"Install a flash-attn wheel whose effective C++11 ABI is {int(torch_abi)} "
                               f"(cxx11abi{label}, like this torch) for the same torch and CUDA: "
                               "`vox1-setup install` picks it by the effective ABI, not the file-name label."))

    return refine


def _torch_version_fix(d: Diagnosis, _m: re.Match[str], _text: str, env: Environment | None) -> Diagnosis:
    if env is None or env.torch is None or not env.torch.version:
        return d
    mm = env.torch.major_minor
    label = f"{mm[0]}.{mm[1]}" if mm else env.torch.version
    return replace(d, fix=f"Install the flash-attn wheel built for torch {label} (the installed torch is "
                          f"{env.torch.version}): run `vox1-setup install`.")


def _not_supported_wheel(d: Diagnosis, m: re.Match[str], text: str, env: Environment | None) -> Diagnosis:
    """pip names the wheel; its tags tell whether the Python tag or the platform tag is wrong."""
    name = re.search(r"([\w.+-]+?)-(cp\d+t?|py\d+)-([\w]+)-([\w.]+?)\.whl", text)
    if name is None:
        return d
    py_tag, plat = name.group(2), name.group(4)
    if env is not None:
        tags = env.wheel_tags
        py_ok = any(t.startswith(py_tag + "-") for t in tags)
        plat_ok = any(p in {t.split("-")[-1] for t in tags} for p in plat.split("."))
        here = f"Python {env.python.version} on {env.os} {env.machine}"
        if not plat_ok:
            return replace(d, cause="platform-mismatch",
                           summary=f"The wheel is for {plat}; this interpreter is {here}.",
                           fix="Use a wheel built for this platform: `vox1-setup install` picks one by the "
                               "interpreter's own tags.")
        if not py_ok:
            return replace(d, cause="python-mismatch",
                           summary=f"The wheel is for {py_tag}; this interpreter is {here}.",
                           fix="Use the wheel with this Python's tag: `vox1-setup install` picks one by the "
                               "interpreter's own tags.")
        return d
    windows_wheel = plat.startswith("win")
    linux_host = bool(re.search(r"(^|\s)/(home|usr|opt|root|tmp)/", text))
    windows_host = bool(re.search(r"[A-Za-z]:\\", text))
    if (windows_wheel and linux_host) or (not windows_wheel and windows_host):
        return replace(d, cause="platform-mismatch", summary=f"The wheel is for {plat}, not for this operating "
                                                             "system or CPU.")
    return replace(d, cause="python-mismatch",
                   summary=f"The wheel's tags ({py_tag}, {plat}) do not match this interpreter (most often the "
                           "Python version: cp310 is Python 3.10, cp311 is 3.11, …).")


def _driver_fix(d: Diagnosis, m: re.Match[str], _text: str, env: Environment | None) -> Diagnosis:
    found = re.search(r"found version (\d+)", m.group(0))
    summary = d.summary
    if found:
        code = int(found.group(1))  # cudaDriverGetVersion style: 12040 = 12.4
        summary = f"{d.summary.rstrip('.')} (the driver supports CUDA up to {code // 1000}.{code % 1000 // 10})."
    fix = d.fix
    if env is not None and env.torch is not None and env.torch.cuda:
        fix = (f"Update the NVIDIA driver to one that supports CUDA {env.torch.cuda} (this torch's CUDA), "
               "then restart; or use a torch/wheel built for an older CUDA.")
    return replace(d, summary=summary, fix=fix)


def _gpu_fix(d: Diagnosis, _m: re.Match[str], _text: str, env: Environment | None) -> Diagnosis:
    if env is None:
        return d
    caps = [g.capability_tuple for g in env.gpus if g.capability_tuple]
    if caps and max(caps) >= (10, 0):
        return replace(d, summary="This Blackwell GPU needs flash-attn ≥ 2.7.3 built with CUDA ≥ 12.8.",
                       fix="Install a flash-attn ≥ 2.7.3 wheel built with nvcc ≥ 12.8 (with torch ≥ 2.7 cu128+ "
                           "and driver ≥ 570): `vox1-setup install` picks one; meanwhile use sdpa.")
    if caps and max(caps) < (8, 0):
        names = ", ".join(g.name for g in env.gpus)
        return replace(d, summary=f"{names} is older than Ampere (compute capability < 8.0): FlashAttention 2 "
                                  "cannot run on it.")
    return d


def _build_or_missing(d: Diagnosis, _m: re.Match[str], text: str, _env: Environment | None) -> Diagnosis:
    if _BUILD_CONTEXT.search(text):
        return replace(d, cause="source-build",
                       summary="pip is building flash-attn from source, and the build cannot see torch "
                               "(build isolation) or a CUDA toolkit.",
                       fix=_SOURCE_BUILD_FIX)
    return d


_SOURCE_BUILD_FIX = ("Install a prebuilt wheel instead: `vox1-setup install` (no compiler needed). If you must "
                     "build: CUDA toolkit ≥ 11.7, ninja, `pip install flash-attn --no-build-isolation`, and "
                     "MAX_JOBS=4 below 96 GB of RAM.")

_SDPA_FIX = ("Use attention `sdpa` (`vox1-setup settings set attention_implementation sdpa`, or keep `auto`): "
             "it is fast on this GPU and needs nothing extra.")

# Most specific first: the first rule that matches anywhere in the text wins.
RULES: tuple[Rule, ...] = (
    # transformers' refusal wraps the real reason; the reason is explained on its own first (see explain()).
    Rule("abi-mismatch",
         _rx(r"undefined symbol: _ZN3c105ErrorC2ENS_14SourceLocationENSt7__cxx1112basic_string\w*"),
         "The flash-attn wheel was built with the C++11 ABI (1); this torch uses the old ABI (0).",
         "Install the wheel with the other effective C++11 ABI.", _abi_fix(True)),
    Rule("abi-mismatch", _rx(r"undefined symbol: _ZN3c105ErrorC2ENS_14SourceLocationESs\w*"),
         "The flash-attn wheel was built with the old C++ ABI (0); this torch uses the C++11 ABI (1).",
         "Install the wheel with the other effective C++11 ABI.", _abi_fix(False)),
    Rule("abi-mismatch", _rx(r"undefined symbol: _Z\w*__cxx11\w*"),
         "The flash-attn wheel and torch were built with different C++11 ABI settings.",
         "Install the wheel with the other effective C++11 ABI.", _abi_fix(None)),
    Rule("cuda-mismatch", _rx(r"undefined symbol: (cuda|cublas|cusparse|nv)\w+|"
                              r"libcudart\.so\.\d+: cannot open shared object file"),
         "The flash-attn wheel was built for another CUDA major than this torch (or torch is a CPU build).",
         "Install the wheel for torch's CUDA major (cu12 for +cu12x torch, cu13 for +cu13x): `vox1-setup install`."),
    Rule("torch-mismatch", _rx(r"undefined symbol: _Z\w*?(?:3c10|2at|5torch)\w*"),
         "The flash-attn wheel was built for another torch version (major.minor) than the one installed.",
         "Install the flash-attn wheel built for the installed torch: `vox1-setup install`.", _torch_version_fix),
    Rule("torch-mismatch", _rx(r"DLL load failed(?: while importing \w+)?: The specified procedure could not be "
                               r"found|\[WinError 127\][^\n]*"),
         "Windows: the flash-attn wheel does not match this torch (version or CUDA build).",
         "Install the wheel built for this exact torch and CUDA: `vox1-setup install`.", _torch_version_fix),
    Rule("dll-missing", _rx(r"DLL load failed(?: while importing \w+)?: The specified module could not be found|"
                            r"\[WinError 126\][^\n]*"),
         "Windows: a DLL that flash-attn or torch needs is missing — usually a CPU-only torch, a torch for "
         "another CUDA, or a missing Microsoft Visual C++ Redistributable.",
         "Install a CUDA build of torch and the flash-attn wheel that matches it (`vox1-setup doctor` shows which "
         "is wrong); if torch itself fails, install the latest Visual C++ Redistributable (x64)."),
    Rule("dll-missing", _rx(r"\[WinError 1114\][^\n]*"),
         "Windows: a torch DLL failed to initialise — usually a missing or old Microsoft Visual C++ "
         "Redistributable, or a broken torch install.",
         "Install the latest Visual C++ Redistributable (x64) from Microsoft, restart, and if it persists "
         "reinstall torch in VOX-1's Python."),
    Rule("platform-mismatch", _rx(r"(?:DLL load failed[^\n]*: )?%1 is not a valid Win32 application|"
                                  r"\[WinError 193\][^\n]*|wrong ELF class: ELFCLASS\d+"),
         "The extension was built for another CPU architecture or bitness than this Python (32/64-bit, x86/ARM).",
         "Use a wheel built for this interpreter's platform: `vox1-setup install` picks one by its own tags."),
    # Windows prints the reason in the system language ("Die angegebene Prozedur wurde nicht gefunden."): after
    # the English texts above, the extension that failed is enough to tell the cause.
    Rule("torch-mismatch", _rx(r"DLL load failed while importing flash_attn_2_cuda[^\n]*"),
         "Windows: flash-attn's CUDA extension did not load; the wheel does not match this torch or CUDA build.",
         "Install the wheel built for this exact torch and CUDA: `vox1-setup install`.", _torch_version_fix),
    Rule("torch-missing", _rx(r"lib(c10|torch|torch_cpu|torch_python|c10_cuda)\.so: cannot open shared object "
                              r"file"),
         "torch is missing or broken in this interpreter, so flash-attn cannot load torch's libraries.",
         "Reinstall torch in this interpreter (the VOX-1 Python), then run `vox1-setup doctor`."),
    Rule("glibc-too-old", _rx(r"version `GLIBC_2\.\d+' not found"),
         "The wheel needs a newer glibc than this Linux has (official 2.8.x wheels need glibc 2.32+).",
         "Use flash-attn 2.7.4.post1 or a manylinux-tagged wheel: `vox1-setup install` checks glibc for you."),
    Rule("libstdcxx-too-old", _rx(r"version `(GLIBCXX|CXXABI)_[\d.]+' not found"),
         "The C++ runtime (libstdc++) loaded here is older than the one the wheel was built against.",
         "Update libstdc++ (the OS package, or `conda install -c conda-forge libstdcxx-ng` in conda), or use a "
         "manylinux-tagged wheel."),
    Rule("python-mismatch", _rx(r"is not a supported wheel on this platform"),
         "The wheel's Python or platform tag does not match this interpreter.",
         "Use a wheel with this interpreter's tags: `vox1-setup install` picks one.", _not_supported_wheel),
    Rule("gpu-unsupported", _rx(r"FlashAttention only supports? Ampere GPUs or newer"),
         "The GPU is older than Ampere (compute capability < 8.0), or a Blackwell GPU with flash-attn < 2.7.3.",
         _SDPA_FIX + " On Blackwell, a flash-attn ≥ 2.7.3 wheel built with CUDA ≥ 12.8 works.", _gpu_fix),
    Rule("gpu-arch-missing", _rx(r"no kernel image is available for execution on the device"),
         "The installed wheel (or torch) has no compiled code for this GPU's architecture.",
         "Install a wheel built with nvcc ≥ 12.8 and flash-attn ≥ 2.7.3 (needed for Blackwell), with torch "
         "cu128+: `vox1-setup install`.", _gpu_fix),
    Rule("gpu-arch-missing", _rx(r"with CUDA capability sm_\d+ is not compatible with the current PyTorch "
                                 r"installation"),
         "This torch build has no code for the GPU's architecture (e.g. torch cu126 on an RTX 50xx).",
         "Install torch ≥ 2.7 built for CUDA 12.8 or newer, then `vox1-setup install`."),
    Rule("driver-too-old", _rx(r"The NVIDIA driver on your system is too old(?: \(found version \d+\))?|"
                               r"CUDA driver version is insufficient for CUDA runtime version"),
         "The NVIDIA driver is older than the CUDA this torch or wheel was built for.",
         "Update the NVIDIA driver (https://www.nvidia.com/Download/index.aspx), restart, and run "
         "`vox1-setup doctor`.", _driver_fix),
    Rule("driver-missing", _rx(r"Found no NVIDIA driver on your system|NVIDIA-SMI has failed because it couldn't "
                               r"communicate with the NVIDIA driver"),
         "No working NVIDIA driver was found.",
         "Install or repair the NVIDIA driver and restart; until then VOX-1 runs on the CPU with sdpa."),
    Rule("dtype", _rx(r"FlashAttention only supports? fp16 and bf16 data type"),
         "FlashAttention 2 computes only in float16/bfloat16; the model runs in float32.",
         "Load the model in bfloat16 or float16: `vox1-setup settings set dtype auto` (or bfloat16)."),
    Rule("head-dim", _rx(r"FlashAttention (?:forward |backward )?only supports head dimension at most \d+"),
         "FlashAttention 2 supports head dimensions up to 256 only.",
         "Use attention `sdpa` for this model: `vox1-setup settings set attention_implementation sdpa`."),
    Rule("source-build", _rx(r"Precompiled wheel not found\. Building from source|Guessing wheel URL:[^\n]*|"
                             r"CUDA_HOME environment variable is not set|Microsoft Visual C\+\+ 14\.0 or greater "
                             r"is required|nvcc (?:was )?not found|Failed (?:to build|building wheel for) "
                             r"flash[-_]attn|"
                             r"Building wheel for flash[-_]attn \(setup\.py\)|ninja: build stopped|"
                             r"fatal error: cuda_runtime(?:_api)?\.h: No such file"),
         "pip fell back to building flash-attn from source: this takes hours, needs the CUDA toolkit and often "
         "runs out of memory.", _SOURCE_BUILD_FIX),
    Rule("torch-missing", _rx(r"No module named ['\"]?torch(?![\w.])['\"]?"),
         "torch is not installed in this interpreter.",
         "Install torch in the VOX-1 Python (the one `--python` points at), then run `vox1-setup doctor`.",
         _build_or_missing),
    Rule("cuda-mismatch", _rx(r"The detected CUDA version \([\d.]+\) mismatches the version that was used to "
                              r"compile\s+PyTorch \([\d.]+\)"),
         "A source build found a CUDA toolkit of another version than torch's CUDA.",
         _SOURCE_BUILD_FIX),
    Rule("torch-cpu", _rx(r"Torch not compiled with CUDA enabled|Flash Attention 2 is not available on CPU|"
                          r"kernels-community/flash-attn"),
         "torch cannot use a CUDA GPU here (a CPU-only torch build, or no GPU visible).",
         "Install a CUDA build of torch for this GPU, or use attention `sdpa` on the CPU."),
    Rule("flash-attn-too-old", _rx(r"you need flash_attn package version to be greater or equal than [\d.]+"),
         "The installed flash-attn is too old for transformers.",
         "Install a current prebuilt wheel: `vox1-setup install`."),
    Rule("flash-attn-missing", _rx(r"the package flash_attn seems to be not installed|"
                                   r"No module named ['\"]?flash_attn(?:_2_cuda)?(?![\w.])['\"]?"),
         "flash-attn is not installed in this interpreter.",
         "Install it with `vox1-setup install`, or use attention `auto`/`sdpa` (works without it)."),
    Rule("out-of-memory", _rx(r"CUDA out of memory|CUDA error: out of memory|OutOfMemoryError"),
         "The GPU ran out of memory.",
         "Lower the batch size or let VOX-1 measure it: `vox1-setup settings set batch_size auto`; close other "
         "programs that use the GPU."),
    Rule("fa2-refused", _rx(r"does not support Flash Attention 2(?:\.0)? yet"),
         "This model does not support FlashAttention 2 in transformers.",
         "Use attention `auto` or `sdpa` for it: `vox1-setup settings set attention_implementation auto`."),
    Rule("fa2-refused", _rx(r"FlashAttention2 has been toggled on, but it cannot be used due to the following "
                            r"error:[^\n]*"),
         "transformers refused FlashAttention 2.",
         "Run `vox1-setup doctor` to see why; attention `auto` falls back to sdpa meanwhile."),
)


def explain(text: str, env: Environment | None = None) -> Diagnosis | None:
    """The cause of an error text, or None when no known fragment is in it (say so; suggest `doctor`)."""
    if not text or not text.strip():
        return None
    for rule in RULES:
        m = rule.pattern.search(text)
        if m is None:
            continue
        d = Diagnosis(rule.cause, rule.summary, rule.fix, _clip(m.group(0)))
        if rule.refine is not None:
            d = rule.refine(d, m, text, env)
        if rule.cause == "fa2-refused" and "following error:" in m.group(0):
            d = replace(d, summary=f"transformers refused FlashAttention 2: {_after_colon(m.group(0))}")
        return d
    return None


def _after_colon(fragment: str) -> str:
    rest = fragment.split("following error:", 1)[-1].strip()
    return rest or "(no reason given)"


def _clip(fragment: str, limit: int = 200) -> str:
    one_line = " ".join(fragment.split())
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"
