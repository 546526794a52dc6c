"""Real, pip-installable fixture `flash_attn` wheels, built by the tests.

The fixture's `flash_attn_2_cuda` is a pure-Python module standing in for the CUDA extension: its `fwd`
computes attention with torch on whatever device the tensors are on, so the verifier's functional path runs on
CPU (which the verifier allows only under the test-only switch VOX1_VERIFY_ALLOW_CPU=1).
Kinds: "good", "undefined-symbol" (the extension's import raises the real-world ImportError), "wrong-numbers"
(the kernel returns wrong results), "version-mismatch" (metadata version differs from the file name's).
"""

from __future__ import annotations

import base64
import hashlib
import sys
import zipfile
from pathlib import Path

INTERFACE = '''\
import flash_attn_2_cuda


def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False):
    return flash_attn_2_cuda.fwd(q, k, v, causal)
'''

KERNEL_GOOD = '''\
def fwd(q, k, v, causal):
    import torch

    out = torch.nn.functional.scaled_dot_product_attention(
        q.float().transpose(1, 2), k.float().transpose(1, 2), v.float().transpose(1, 2), is_causal=causal)
    return out.transpose(1, 2).to(q.dtype)
'''

KERNEL_WRONG = KERNEL_GOOD.replace("return out.transpose(1, 2).to(q.dtype)",
                                   "return (out.transpose(1, 2) + 0.25).to(q.dtype)")

KERNEL_UNDEFINED = '''\
raise ImportError(__file__.replace(".py", ".cpython-311-x86_64-linux-gnu.so") +
                  ": undefined symbol: _ZN3c104cuda9SetDeviceEi")
'''

KINDS = ("good", "undefined-symbol", "wrong-numbers", "version-mismatch")


def python_tag() -> str:
    return f"cp{sys.version_info[0]}{sys.version_info[1]}"


def platform_tag() -> str:
    import sysconfig

    return sysconfig.get_platform().replace("-", "_").replace(".", "_")


def wheel_filename(version: str = "2.8.3", local: str = "cu12torch2.13cxx11abiTRUE") -> str:
    tag = python_tag()
    label = f"+{local}" if local else ""
    return f"flash_attn-{version}{label}-{tag}-{tag}-{platform_tag()}.whl"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(dest_dir: Path, *, kind: str = "good", version: str = "2.8.3",
                local: str = "cu12torch2.13cxx11abiTRUE", padding: int = 0) -> Path:
    """Write a flash_attn wheel into `dest_dir` and return its path. `padding` adds an incompressible data file
    of that many bytes (for download/benchmark sizes)."""
    if kind not in KINDS:
        raise ValueError(kind)
    meta_version = version
    if kind == "version-mismatch":
        parts = version.split(".")
        meta_version = ".".join([*parts[:-1], str(int(parts[-1]) + 1)])
    kernel = {"good": KERNEL_GOOD, "undefined-symbol": KERNEL_UNDEFINED, "wrong-numbers": KERNEL_WRONG,
              "version-mismatch": KERNEL_GOOD}[kind]
    files: dict[str, bytes] = {
        "flash_attn/__init__.py": (f'__version__ = "{meta_version}"\n\n'
                                   "from flash_attn.flash_attn_interface import flash_attn_func  # noqa\n").encode(),
        "flash_attn/flash_attn_interface.py": INTERFACE.encode(),
        "flash_attn_2_cuda.py": kernel.encode(),
    }
    if padding:
        import random

        files["flash_attn/_blob.bin"] = random.Random(version).randbytes(padding)
    info = f"flash_attn-{meta_version}.dist-info"
    files[f"{info}/METADATA"] = (f"Metadata-Version: 2.1\nName: flash_attn\nVersion: {meta_version}\n"
                                 "Summary: fixture\n").encode()
    files[f"{info}/WHEEL"] = (f"Wheel-Version: 1.0\nGenerator: vox1-tests\nRoot-Is-Purelib: false\n"
                              f"Tag: {python_tag()}-{python_tag()}-{platform_tag()}\n").encode()
    files[f"{info}/top_level.txt"] = b"flash_attn\nflash_attn_2_cuda\n"
    record = [_record_line(name, data) for name, data in files.items()] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / wheel_filename(version, local)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
