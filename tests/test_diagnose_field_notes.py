"""Every row of FIELD-NOTES §5 through `vox1-setup explain-error`, as users paste it: inside a traceback, once
as Linux prints it (LF, POSIX paths, passed as an argument) and once as it comes from a Windows machine
(CRLF, `C:\\Program Files\\...` paths, read from a log file in UTF-16 as PowerShell `>` writes it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from vox1_setup.cli import run_cli
from vox1_setup.diagnose import explain


class Row(NamedTuple):
    row: str  # the FIELD-NOTES §5 row, in short
    linux: str  # the text as it appears on Linux
    windows: str  # the text as it appears on Windows (the same text where the error has no Windows form)
    cause_linux: str
    cause_windows: str


SITE_L = "/home/ana/VOX-1/system_python/lib/python3.11/site-packages"
SITE_W = r"C:\Program Files\VOX-1\system_python\Lib\site-packages"
ABI1_SYMBOL = "_ZN3c105ErrorC2ENS_14SourceLocationENSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE"
DLL_PROCEDURE = ("ImportError: DLL load failed while importing flash_attn_2_cuda: The specified procedure could not "
                 "be found.")
DLL_MODULE = "ImportError: DLL load failed while importing flash_attn_2_cuda: The specified module could not be found."


def _so(symbol: str) -> str:
    return f"ImportError: {SITE_L}/flash_attn_2_cuda.cpython-311-x86_64-linux-gnu.so: undefined symbol: {symbol}"


ROWS: list[Row] = [
    Row("ABI 1 wheel on ABI 0 torch", _so(ABI1_SYMBOL), _so(ABI1_SYMBOL), "abi-mismatch", "abi-mismatch"),
    Row("ABI 0 wheel on ABI 1 torch", _so("_ZN3c105ErrorC2ENS_14SourceLocationESs"),
        _so("_ZN3c105ErrorC2ENS_14SourceLocationESs"), "abi-mismatch", "abi-mismatch"),
    Row("wheel for another torch minor: c10::cuda::SetDevice", _so("_ZN3c104cuda9SetDeviceEi"), DLL_PROCEDURE,
        "torch-mismatch", "torch-mismatch"),
    Row("wheel for another torch minor: at::_ops", _so("_ZN2at4_ops19empty_memory_format4callEN3c108ArrayRefINS2_6"
                                                       "SymIntEEE"), DLL_PROCEDURE, "torch-mismatch", "torch-mismatch"),
    Row("wheel for another torch minor: c10::SymInt", _so("_ZNK3c106SymInt6sym_neERKS0_"), DLL_PROCEDURE,
        "torch-mismatch", "torch-mismatch"),
    Row("Windows: procedure not found", DLL_PROCEDURE, DLL_PROCEDURE, "torch-mismatch", "torch-mismatch"),
    Row("Windows: module not found", DLL_MODULE, DLL_MODULE, "dll-missing", "dll-missing"),
    Row("torch missing or broken",
        "ImportError: libc10.so: cannot open shared object file: No such file or directory",
        f'OSError: [WinError 126] The specified module could not be found. Error loading "{SITE_W}\\torch\\lib\\'
        'c10.dll" or one of its dependencies.', "torch-missing", "dll-missing"),
    Row("glibc too old",
        f"ImportError: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.32' not found (required by {SITE_L}/"
        "flash_attn_2_cuda.cpython-311-x86_64-linux-gnu.so)",
        "ImportError: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.32' not found (required by "
        "/mnt/c/VOX-1/wsl-venv/lib/python3.11/site-packages/flash_attn_2_cuda.cpython-311-x86_64-linux-gnu.so)",
        "glibc-too-old", "glibc-too-old"),
    Row("not a supported wheel",
        "ERROR: flash_attn-2.8.3+cu12torch2.8cxx11abiTRUE-cp312-cp312-linux_x86_64.whl is not a supported wheel on "
        f"this platform. (pip run by {SITE_L}/../../../bin/python)",
        "ERROR: flash_attn-2.8.3+cu12torch2.8cxx11abiTRUE-cp311-cp311-linux_x86_64.whl is not a supported wheel on "
        f"this platform. (pip run by {SITE_W}\\..\\..\\python.exe)",
        "python-mismatch", "platform-mismatch"),
    Row("GPU older than Ampere", "RuntimeError: FlashAttention only supports Ampere GPUs or newer.",
        "RuntimeError: FlashAttention only supports Ampere GPUs or newer.", "gpu-unsupported", "gpu-unsupported"),
    Row("no kernel image", "RuntimeError: CUDA error: no kernel image is available for execution on the device\n"
        "CUDA kernel errors might be asynchronously reported at some other API call",
        "RuntimeError: CUDA error: no kernel image is available for execution on the device\n"
        "Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.", "gpu-arch-missing", "gpu-arch-missing"),
    Row("driver too old",
        "RuntimeError: The NVIDIA driver on your system is too old (found version 11040). Please update your GPU "
        "driver by downloading and installing a new version from the URL: http://www.nvidia.com/Download/index.aspx",
        "UserWarning: CUDA initialization: The NVIDIA driver on your system is too old (found version 12020). "
        "Please update your GPU driver", "driver-too-old", "driver-too-old"),
    Row("fp32 model", "RuntimeError: FlashAttention only support fp16 and bf16 data type",
        "RuntimeError: FlashAttention only support fp16 and bf16 data type", "dtype", "dtype"),
    Row("pip fell back to a source build",
        "  Guessing wheel URL:  https://github.com/Dao-AILab/flash-attention/releases/download/v2.8.3/flash_attn-"
        "2.8.3+cu12torch2.9cxx11abiTRUE-cp313-cp313-linux_x86_64.whl\n"
        "  Precompiled wheel not found. Building from source...",
        "  Guessing wheel URL:  https://github.com/Dao-AILab/flash-attention/releases/download/v2.8.3/flash_attn-"
        "2.8.3+cu12torch2.9cxx11abiTRUE-cp313-cp313-win_amd64.whl\n"
        "  Precompiled wheel not found. Building from source...", "source-build", "source-build"),
    Row("source build without the CUDA toolkit",
        "OSError: CUDA_HOME environment variable is not set. Please set it to your CUDA install root.",
        "OSError: CUDA_HOME environment variable is not set. Please set it to your CUDA install root.",
        "source-build", "source-build"),
    Row("source build under build isolation",
        "  Getting requirements to build wheel ... error\n  error: subprocess-exited-with-error\n"
        "  ModuleNotFoundError: No module named 'torch'",
        "  Getting requirements to build wheel ... error\n  error: subprocess-exited-with-error\n"
        "  ModuleNotFoundError: No module named 'torch'", "source-build", "source-build"),
    Row("transformers refused FA2: package missing",
        "ImportError: FlashAttention2 has been toggled on, but it cannot be used due to the following error: the "
        "package flash_attn seems to be not installed. Please refer to the documentation of "
        "https://huggingface.co/docs/transformers/perf_infer_gpu_one#flashattention-2 to install Flash Attention 2.",
        "ImportError: FlashAttention2 has been toggled on, but it cannot be used due to the following error: the "
        "package flash_attn seems to be not installed.", "flash-attn-missing", "flash-attn-missing"),
    Row("transformers refused FA2: no CUDA",
        "ValueError: FlashAttention2 has been toggled on, but it cannot be used due to the following error: Flash "
        "Attention 2 is not available on CPU. Please make sure torch can access a CUDA device.",
        "ValueError: FlashAttention2 has been toggled on, but it cannot be used due to the following error: Flash "
        "Attention 2 is not available on CPU. Please make sure torch can access a CUDA device.",
        "torch-cpu", "torch-cpu"),
    Row("transformers refused FA2: another reason",
        "ImportError: FlashAttention2 has been toggled on, but it cannot be used due to the following error: Flash "
        "Attention 2 is not available. Please refer to the documentation",
        "ImportError: FlashAttention2 has been toggled on, but it cannot be used due to the following error: Flash "
        "Attention 2 is not available. Please refer to the documentation", "fa2-refused", "fa2-refused"),
]


def linux_traceback(text: str) -> str:
    return ("Traceback (most recent call last):\n"
            '  File "/home/ana/VOX-1/app.py", line 42, in load_model\n'
            "    model = AutoModel.from_pretrained(path, attn_implementation=attention)\n"
            f'  File "{SITE_L}/flash_attn/flash_attn_interface.py", line 15, in <module>\n'
            "    import flash_attn_2_cuda as flash_attn_gpu\n"
            f"{text}\n")


def windows_traceback(text: str) -> str:
    lines = ["Traceback (most recent call last):",
             r'  File "C:\Program Files\VOX-1\app.py", line 42, in load_model',
             "    model = AutoModel.from_pretrained(path, attn_implementation=attention)",
             f'  File "{SITE_W}\\flash_attn\\flash_attn_interface.py", line 15, in <module>',
             "    import flash_attn_2_cuda as flash_attn_gpu",
             *text.split("\n")]
    return "\r\n".join(lines) + "\r\n"


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    capsys.readouterr()
    assert run_cli(["explain-error", "--json", *args]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert isinstance(doc, dict)
    return doc


def _check(doc: dict[str, Any], cause: str, pasted: str) -> None:
    assert doc["schema"] == "vox1-explain/1"
    assert doc["cause"] == cause, doc
    assert doc["summary"] and doc["fix"]
    # the fragment shown is from the pasted text (whitespace folded), so the user sees what was recognised
    assert " ".join(doc["matched"].rstrip("…").split()) in " ".join(pasted.split())


@pytest.mark.parametrize("row", ROWS, ids=[r.row for r in ROWS])
def test_linux_traceback(row: Row, capsys: pytest.CaptureFixture[str]) -> None:
    pasted = linux_traceback(row.linux)
    _check(_json(capsys, pasted), row.cause_linux, pasted)


@pytest.mark.parametrize("row", ROWS, ids=[r.row for r in ROWS])
def test_windows_traceback_from_a_powershell_log(row: Row, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pasted = windows_traceback(row.windows)
    log = tmp_path / "Activity Log.txt"
    log.write_bytes(pasted.encode("utf-16"))  # PowerShell 5 `>` writes UTF-16 with a BOM
    _check(_json(capsys, "--file", str(log)), row.cause_windows, pasted)


def test_every_row_is_covered_in_both_forms() -> None:
    """The table above follows FIELD-NOTES §5: every cause id its rows name is exercised on both systems."""
    assert len(ROWS) >= 15
    for row in ROWS:
        assert explain(linux_traceback(row.linux)) is not None
        assert explain(windows_traceback(row.windows)) is not None


@pytest.mark.parametrize("pasted", [
    linux_traceback("KeyError: 'speaker_embedding'"),
    windows_traceback("PermissionError: [WinError 5] Access is denied: 'C:\\\\Program Files\\\\VOX-1\\\\out.wav'"),
], ids=["linux", "windows"])
def test_unknown_text_is_honest_and_points_to_doctor(pasted: str, capsys: pytest.CaptureFixture[str]) -> None:
    doc = _json(capsys, pasted)
    assert doc["cause"] is None and doc["matched"] is None
    assert "not one vox1-setup knows" in doc["summary"]
    assert "vox1-setup doctor" in doc["fix"]
    capsys.readouterr()
    assert run_cli(["explain-error", pasted]) == 0
    out = capsys.readouterr().out
    assert "Unknown error" in out and "vox1-setup doctor" in out
