"""Pure parts of the install pipeline, and the verifier's functional check run on real (CPU) torch tensors.

The functional check's GPU path cannot run here; its arithmetic can: `_functional_case` is called with real
torch on the CPU and stand-in kernels that make the mistakes a wrong wheel (or a wrong check) would make.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from vox1_setup.installer import DISK_MARGIN_BYTES, free_bytes, is_pip_temp_name, space_shortfall
from vox1_setup.journal import same_target
from vox1_setup.lock import lock_key


def load_verify_script() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "vox1_setup" / "verify_script.py"
    spec = importlib.util.spec_from_file_location("vox1_verify_script_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


VS = load_verify_script()


def sdpa_kernel(q: Any, k: Any, v: Any, causal: bool) -> Any:
    """What a correct flash_attn_func computes, in flash-attn's (batch, seqlen, heads, dim) layout."""
    out = torch.nn.functional.scaled_dot_product_attention(
        q.float().transpose(1, 2), k.float().transpose(1, 2), v.float().transpose(1, 2), is_causal=causal)
    return out.transpose(1, 2).to(q.dtype)


class Kernel:
    """A stand-in flash_attn_func with the real signature; counts its calls."""

    def __init__(self, body: Any) -> None:
        self.body = body
        self.calls = 0

    def __call__(self, q: Any, k: Any, v: Any, dropout_p: float = 0.0,  # noqa: PLR0917 (flash_attn's signature)
                 softmax_scale: float | None = None, causal: bool = False) -> Any:
        assert dropout_p == 0.0 and softmax_scale is None
        assert q.shape[1] == VS.SEQLEN and q.shape[2] == VS.HEADS  # (batch, seqlen, heads, dim) is what it gets
        self.calls += 1
        return self.body(q, k, v, causal)


def run_case(kernel: Kernel, *, causal: bool, dtype_name: str = "bfloat16", head_dim: int = 64) -> dict[str, Any]:
    dtype = getattr(torch, dtype_name)
    gen = torch.Generator(device="cpu").manual_seed(0)
    case: dict[str, Any] = VS._functional_case(torch, kernel, "cpu", name=dtype_name, dtype=dtype,
                                               head_dim=head_dim, causal=causal, gen=gen)
    return case


@pytest.mark.parametrize(("dtype_name", "head_dim", "causal"),
                         list(itertools.product(("float16", "bfloat16"), (64, 128), (False, True))))
def test_a_correct_kernel_passes_within_the_stated_tolerance(dtype_name: str, head_dim: int, causal: bool) -> None:
    kernel = Kernel(sdpa_kernel)
    case = run_case(kernel, causal=causal, dtype_name=dtype_name, head_dim=head_dim)
    assert case["ok"], case
    assert case["tolerance"] == VS.TOLERANCE[dtype_name] and case["max_abs_err"] <= case["tolerance"]
    assert case["shape"] == [2, VS.SEQLEN, VS.HEADS, head_dim]
    assert case["ms"] >= 0.0 and kernel.calls == 2  # one untimed warm-up, one timed call


def test_a_kernel_that_mixes_up_the_layout_fails() -> None:
    # Treats the input as (batch, heads, seqlen, dim), as SDPA would: attends across heads instead of tokens.
    def no_transpose(q: Any, k: Any, v: Any, causal: bool) -> Any:
        return torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float(),
                                                                is_causal=causal).to(q.dtype)

    for causal in (False, True):
        case = run_case(Kernel(no_transpose), causal=causal)
        assert not case["ok"] and case["max_abs_err"] > 0.1, case


def test_a_kernel_that_ignores_the_causal_flag_fails_only_the_causal_cases() -> None:
    kernel = Kernel(lambda q, k, v, causal: sdpa_kernel(q, k, v, False))
    assert run_case(kernel, causal=False)["ok"]
    bad = run_case(kernel, causal=True)
    assert not bad["ok"] and bad["max_abs_err"] > 0.1


def test_a_kernel_with_the_wrong_scale_fails() -> None:
    def unscaled(q: Any, k: Any, v: Any, causal: bool) -> Any:
        return sdpa_kernel(q * q.shape[-1] ** 0.5, k, v, causal)

    assert not run_case(Kernel(unscaled), causal=False)["ok"]


def test_nan_wrong_shape_and_exceptions_are_failures_with_a_reason() -> None:
    nan = run_case(Kernel(lambda q, k, v, causal: sdpa_kernel(q, k, v, causal) * float("nan")), causal=False)
    assert not nan["ok"] and nan["max_abs_err"] is None and "NaN" in nan["error"]
    shape = run_case(Kernel(lambda q, k, v, causal: sdpa_kernel(q, k, v, causal)[:, :1]), causal=False)
    assert not shape["ok"] and "shape" in shape["error"]
    dtype = run_case(Kernel(lambda q, k, v, causal: sdpa_kernel(q, k, v, causal).float()), causal=False)
    assert not dtype["ok"] and "dtype" in dtype["error"]

    def boom(q: Any, k: Any, v: Any, causal: bool) -> Any:
        raise RuntimeError("CUDA error: no kernel image is available for execution on the device")

    err = run_case(Kernel(boom), causal=False)
    assert not err["ok"] and "no kernel image" in err["error"]


def test_a_tuple_result_is_read_as_output_first() -> None:
    assert run_case(Kernel(lambda q, k, v, causal: (sdpa_kernel(q, k, v, causal), None)), causal=True)["ok"]


def test_pip_temporary_names_are_recognised_as_pip_makes_them() -> None:
    from pip._internal.utils.temp_dir import AdjacentTempDirectory

    owned = {"flash_attn", "flash_attn-2.7.4.dist-info", "flash_attn_2_cuda.py"}
    for real in owned:
        for name in itertools.islice(AdjacentTempDirectory._generate_names(real), 400):
            assert is_pip_temp_name(name, owned), name
    for other in ("~orch", "flash_attn", "~lash_attn_extra", "~xlash_attn", "~~", "torch", "~"):
        assert not is_pip_temp_name(other, owned), other


def test_space_shortfall_keeps_a_margin_and_never_blocks_on_unknown() -> None:
    assert not space_shortfall(None, 10**12)
    assert space_shortfall(100 + DISK_MARGIN_BYTES - 1, 100)
    assert not space_shortfall(100 + DISK_MARGIN_BYTES, 100)


def test_free_bytes_looks_at_the_nearest_existing_folder(tmp_path: Path) -> None:
    free = free_bytes(tmp_path / "not yet" / "made")
    assert free is not None and free > 0


def test_one_lock_for_every_spelling_of_one_interpreter(tmp_path: Path) -> None:
    a, b = tmp_path / "venv ü" / "bin", tmp_path / "other" / "bin"
    assert lock_key(str(a / "python")) == lock_key(str(a / "python3")) == lock_key(str(a / ".." / "bin" / "python"))
    assert lock_key(str(a / "python")) != lock_key(str(b / "python"))


def test_same_target_follows_the_platform_case_rules() -> None:
    assert same_target("/opt/py/bin/python", "/opt/py/bin/python")
    assert not same_target("/opt/py/bin/python", None)
    assert same_target("C:\\VOX-1\\Python.exe", "c:\\vox-1\\python.exe") == (sys.platform == "win32")


def test_pip_failures_get_a_hint_that_says_what_to_do() -> None:
    from vox1_setup.installer import pip_failure_hint

    py = "C:\\VOX 1\\python.exe"
    assert f'"{py}" -m ensurepip' in str(pip_failure_hint("/x/python: No module named pip", py))
    locked = ("ERROR: Could not install packages due to an OSError: [WinError 32] The process cannot access the "
              "file because it is being used by another process: 'C:\\VOX 1\\Lib\\site-packages\\flash_attn_2_cuda"
              ".cp311-win_amd64.pyd'")
    assert "close it" in str(pip_failure_hint(locked, py))
    tags = "ERROR: flash_attn-2.8.3-cp312-cp312-win_amd64.whl is not a supported wheel on this platform."
    assert "tag" in str(pip_failure_hint(tags, py)).lower()
    assert pip_failure_hint("ERROR: something nobody has seen before", py) is None
