"""The error matcher against real error texts (FIELD-NOTES §5), in Linux and Windows forms, inside tracebacks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vox1_setup.diagnose import CAUSES, RULES, Diagnosis, explain
from vox1_setup.environment import Environment, GpuInfo, PythonInfo, TorchInfo


def _tb(last_line: str, *, windows: bool = False) -> str:
    """A traceback as Python prints it when `import flash_attn` fails at the extension import."""
    if windows:
        where = r"C:\Program Files\VOX-1\system_python\Lib\site-packages\flash_attn\flash_attn_interface.py"
    else:
        where = "/home/user/vox-1/system_python/lib/python3.11/site-packages/flash_attn/flash_attn_interface.py"
    return (
        "Traceback (most recent call last):\n"
        '  File "<string>", line 1, in <module>\n'
        f'  File "{where}", line 10, in <module>\n'
        "    import flash_attn_2_cuda as flash_attn_gpu\n"
        f"{last_line}\n"
    )


# (text, cause) pairs: every row of FIELD-NOTES §5, plus the variants users paste.
SAMPLES: list[tuple[str, str]] = [
    (_tb("ImportError: /home/u/.venv/lib/python3.10/site-packages/flash_attn_2_cuda.cpython-310-x86_64-linux-gnu.so:"
         " undefined symbol: _ZN3c105ErrorC2ENS_14SourceLocationENSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE"),
     "abi-mismatch"),
    (_tb("ImportError: flash_attn_2_cuda.cpython-310-x86_64-linux-gnu.so: undefined symbol: "
         "_ZN3c105ErrorC2ENS_14SourceLocationESs"), "abi-mismatch"),
    (_tb("ImportError: flash_attn_2_cuda.so: undefined symbol: _ZN3c104cuda9SetDeviceEi"), "torch-mismatch"),
    (_tb("ImportError: flash_attn_2_cuda.so: undefined symbol: _ZN2at4_ops5zeros4callEN3c108ArrayRefINS2_6SymIntEEE"),
     "torch-mismatch"),
    (_tb("ImportError: flash_attn_2_cuda.so: undefined symbol: _ZNK3c106SymInt6sym_neERKS0_"), "torch-mismatch"),
    (_tb("ImportError: DLL load failed while importing flash_attn_2_cuda: The specified procedure could not be found.",
         windows=True), "torch-mismatch"),
    (_tb("ImportError: DLL load failed while importing flash_attn_2_cuda: The specified module could not be found.",
         windows=True), "dll-missing"),
    ("ImportError: DLL load failed: The specified module could not be found.", "dll-missing"),
    ('OSError: [WinError 126] The specified module could not be found. Error loading '
     '"C:\\VOX-1\\system_python\\Lib\\site-packages\\torch\\lib\\c10.dll" or one of its dependencies.', "dll-missing"),
    (_tb("ImportError: libc10.so: cannot open shared object file: No such file or directory"), "torch-missing"),
    (_tb("ImportError: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.32' not found (required by "
         "/opt/venv/lib/python3.10/site-packages/flash_attn_2_cuda.cpython-310-x86_64-linux-gnu.so)"),
     "glibc-too-old"),
    ("ERROR: flash_attn-2.8.3+cu12torch2.8cxx11abiTRUE-cp311-cp311-linux_x86_64.whl is not a supported wheel on "
     "this platform.", "python-mismatch"),
    ("ERROR: flash_attn-2.8.3+cu128torch2.8-cp311-cp311-win_amd64.whl is not a supported wheel on this platform.\n"
     "  (run from /home/user/vox)", "platform-mismatch"),
    ("RuntimeError: FlashAttention only supports Ampere GPUs or newer.", "gpu-unsupported"),
    ("RuntimeError: CUDA error: no kernel image is available for execution on the device\nCUDA kernel errors might "
     "be asynchronously reported at some other API call", "gpu-arch-missing"),
    ("UserWarning: NVIDIA GeForce RTX 5090 with CUDA capability sm_120 is not compatible with the current PyTorch "
     "installation.", "gpu-arch-missing"),
    ("RuntimeError: The NVIDIA driver on your system is too old (found version 11040). Please update your GPU "
     "driver by downloading and installing a new version from the URL", "driver-too-old"),
    ("RuntimeError: CUDA error: CUDA driver version is insufficient for CUDA runtime version", "driver-too-old"),
    ("RuntimeError: FlashAttention only support fp16 and bf16 data type", "dtype"),
    ("RuntimeError: FlashAttention forward only supports head dimension at most 256", "head-dim"),
    ("  Guessing wheel URL:  https://github.com/Dao-AILab/flash-attention/releases/download/v2.8.3/flash_attn-2.8.3+"
     "cu12torch2.9cxx11abiTRUE-cp313-cp313-linux_x86_64.whl\n  Precompiled wheel not found. Building from source...",
     "source-build"),
    ("      OSError: CUDA_HOME environment variable is not set. Please set it to your CUDA install root.",
     "source-build"),
    ("  Getting requirements to build wheel ... error\n  error: subprocess-exited-with-error\n"
     "  ModuleNotFoundError: No module named 'torch'", "source-build"),
    ("Traceback (most recent call last):\n  File \"app.py\", line 1, in <module>\n    import torch\n"
     "ModuleNotFoundError: No module named 'torch'", "torch-missing"),
    ("ImportError: FlashAttention2 has been toggled on, but it cannot be used due to the following error: the "
     "package flash_attn seems to be not installed. Please refer to the documentation", "flash-attn-missing"),
    ("ValueError: FlashAttention2 has been toggled on, but it cannot be used due to the following error: Flash "
     "Attention 2 is not available on CPU. Please make sure torch can access a CUDA device.", "torch-cpu"),
    ("ImportError: FlashAttention2 has been toggled on, but it cannot be used due to the following error: Flash "
     "Attention 2 is not available. Please refer to the documentation", "fa2-refused"),
    ("ImportError: libcudart.so.12: cannot open shared object file: No such file or directory", "cuda-mismatch"),
    ("ImportError: version `GLIBCXX_3.4.32' not found (required by flash_attn_2_cuda.so)", "libstdcxx-too-old"),
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", "out-of-memory"),
    ("RuntimeError: Found no NVIDIA driver on your system.", "driver-missing"),
    ("AssertionError: Torch not compiled with CUDA enabled", "torch-cpu"),
    ("ModuleNotFoundError: No module named 'flash_attn'", "flash-attn-missing"),
    ('OSError: [WinError 1114] A dynamic link library (DLL) initialization routine failed. Error loading '
     '"C:\\VOX-1\\system_python\\Lib\\site-packages\\torch\\lib\\c10.dll" or one of its dependencies.',
     "dll-missing"),
    ("ImportError: DLL load failed while importing flash_attn_2_cuda: %1 is not a valid Win32 application.",
     "platform-mismatch"),
    ("ImportError: /x/flash_attn_2_cuda.so: wrong ELF class: ELFCLASS64", "platform-mismatch"),
    (_tb("ImportError: flash_attn_2_cuda.so: undefined symbol: _ZTIN3c1013TensorImplE"), "torch-mismatch"),
    ("RuntimeError: CUDA error: out of memory", "out-of-memory"),
    (_tb("ImportError: flash_attn_2_cuda.so: undefined symbol: _ZN2at6detail10empty_cudaEN3c108ArrayRefIlEENS1_10"
         "ScalarTypeENS1_8optionalINS1_6DeviceEEENS6_INS1_12MemoryFormatEEENSt7__cxx1112basic_stringIcEE"),
     "abi-mismatch"),
    ("      RuntimeError:\n      The detected CUDA version (11.8) mismatches the version that was used to compile\n"
     "      PyTorch (12.1). Please make sure to use the same CUDA versions.", "cuda-mismatch"),
    ("ValueError: Qwen3TTSForConditionalGeneration does not support Flash Attention 2.0 yet.", "fa2-refused"),
    ("      ninja: build stopped: subcommand failed.\n      RuntimeError: Error compiling objects for extension",
     "source-build"),
    ("ImportError: FlashAttention2 has been toggled on, but it cannot be used due to the following error: you need "
     "flash_attn package version to be greater or equal than 2.1.0. Detected version 2.0.9.", "flash-attn-too-old"),
    ("  Building wheel for flash-attn (pyproject.toml) ... error\n  error: subprocess-exited-with-error\n"
     "ERROR: Failed building wheel for flash-attn", "source-build"),
    ("ERROR: Failed building wheel for flash-attn", "source-build"),
    # Windows in another language: the English reasons above do not match, the failing extension does.
    (_tb("ImportError: DLL load failed while importing flash_attn_2_cuda: Die angegebene Prozedur wurde nicht "
         "gefunden.", windows=True), "torch-mismatch"),
    (_tb("ImportError: DLL load failed while importing flash_attn_2_cuda: La procédure spécifiée est introuvable.",
         windows=True), "torch-mismatch"),
]


@pytest.mark.parametrize(("text", "cause"), SAMPLES, ids=[f"{i}-{c}" for i, (_, c) in enumerate(SAMPLES)])
def test_known_texts_get_their_cause(text: str, cause: str) -> None:
    d = explain(text)
    assert d is not None
    assert d.cause == cause
    assert d.summary and d.fix
    assert (d.matched and d.matched.lower() in " ".join(text.split()).lower()) or d.matched.endswith("…")


def test_every_rule_cause_is_a_stable_id_and_every_id_is_reachable() -> None:
    produced = {c for _, c in SAMPLES}
    assert {r.cause for r in RULES} <= set(CAUSES)
    assert set(CAUSES) <= produced, set(CAUSES) - produced
    required = {"abi-mismatch", "torch-mismatch", "cuda-mismatch", "driver-too-old", "glibc-too-old",
                "gpu-unsupported", "gpu-arch-missing", "dll-missing", "python-mismatch", "platform-mismatch",
                "dtype", "source-build", "torch-missing"}
    assert required <= set(CAUSES)


def test_every_rule_has_a_sample_that_reaches_it() -> None:
    reached = set()
    for text, _cause in SAMPLES:
        for i, rule in enumerate(RULES):
            if rule.pattern.search(text):
                reached.add(i)
                break
    missing = [(i, r.cause, r.pattern.pattern[:60]) for i, r in enumerate(RULES) if i not in reached]
    assert not missing, missing


def test_unknown_text_is_none() -> None:
    assert explain("Segmentation fault (core dumped) somewhere else") is None
    assert explain("") is None
    assert explain("   \n") is None


def test_crlf_and_extra_whitespace_are_fine() -> None:
    text = "Traceback:\r\n  ...\r\nImportError: DLL load failed while importing flash_attn_2_cuda: The specified " \
           "procedure could not be found.\r\n"
    d = explain(text)
    assert d is not None and d.cause == "torch-mismatch"


def test_torchaudio_missing_is_not_torch_missing() -> None:
    d = explain("ModuleNotFoundError: No module named 'torchaudio'")
    assert d is None


def _env(*, torch_version: str = "2.8.0+cu128", abi: bool | None = True, cc: str = "8.9", py: str = "3.11.9",
         os_name: str = "linux", machine: str = "x86_64") -> Environment:
    return Environment(
        os=os_name, machine=machine, glibc="2.35" if os_name == "linux" else None, python=PythonInfo(version=py),
        torch=TorchInfo(version=torch_version, cuda="12.8", cxx11abi=abi, cuda_available=True),
        gpus=(GpuInfo(index=0, name="NVIDIA GeForce RTX 4090", compute_capability=cc),),
    )


def test_abi_fix_names_the_effective_abi_of_this_torch() -> None:
    text = "undefined symbol: _ZN3c105ErrorC2ENS_14SourceLocationESs"
    d = explain(text, _env(abi=True))
    assert d is not None and "cxx11abiTRUE" in d.fix
    d0 = explain("undefined symbol: _ZN3c105ErrorC2ENS_14SourceLocationENSt7__cxx1112basic_stringIcE",
                 _env(torch_version="2.5.1+cu124", abi=False))
    assert d0 is not None and "cxx11abiFALSE" in d0.fix


def test_torch_mismatch_fix_names_the_installed_torch() -> None:
    d = explain("undefined symbol: _ZN3c104cuda9SetDeviceEi", _env(torch_version="2.9.1+cu128"))
    assert d is not None and "torch 2.9" in d.fix and "2.9.1+cu128" in d.fix


def test_not_supported_wheel_uses_the_environment_to_tell_python_from_platform() -> None:
    wheel = ("flash_attn-2.8.3+cu12torch2.8cxx11abiTRUE-cp311-cp311-linux_x86_64.whl is not a supported wheel on "
             "this platform.")
    d = explain(wheel, _env(py="3.10.11"))
    assert d is not None and d.cause == "python-mismatch" and "cp311" in d.summary
    d = explain(wheel, _env(py="3.11.9", os_name="windows", machine="amd64"))
    assert d is not None and d.cause == "platform-mismatch"


def test_driver_text_reports_the_cuda_the_driver_supports() -> None:
    d = explain("The NVIDIA driver on your system is too old (found version 11040).", _env())
    assert d is not None and "11.4" in d.summary and "12.8" in d.fix
    assert ". (" not in d.summary and d.summary.endswith("(the driver supports CUDA up to 11.4).")


@pytest.mark.parametrize(("cc", "word"), [("12.0", "Blackwell"), ("7.5", "older than Ampere")])
def test_gpu_texts_name_the_gpu_generation(cc: str, word: str) -> None:
    d = explain("FlashAttention only supports Ampere GPUs or newer.", _env(cc=cc))
    assert d is not None and word in d.summary


def test_wrapper_text_prefers_the_wrapped_reason() -> None:
    text = ("FlashAttention2 has been toggled on, but it cannot be used due to the following error: "
            "ImportError: flash_attn_2_cuda.so: undefined symbol: _ZN3c104cuda9SetDeviceEi")
    d = explain(text)
    assert d is not None and d.cause == "torch-mismatch"


def test_diagnosis_is_a_frozen_value() -> None:
    d = Diagnosis("dtype", "s", "f", "m")
    with pytest.raises(AttributeError):
        d.cause = "x"  # type: ignore[misc]


@given(st.text(max_size=400))
def test_explain_never_raises(text: str) -> None:
    d = explain(text)
    assert d is None or d.cause in CAUSES
