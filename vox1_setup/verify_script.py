"""Run BY PATH inside the target interpreter; prints exactly one JSON object on stdout.

Modes:
  state                       stdlib only (no torch): installed distributions, the flash-attn distribution with
                              its files (from RECORD) hashed, site-packages and free disk space.
  verify --expect VERSION     imports flash_attn and flash_attn_2_cuda, compares the installed base version and,
                              on a GPU with compute capability >= 8.0, checks flash_attn_func against a float32
                              scaled_dot_product_attention reference.

Must stay importable by old Pythons and must not import vox1_setup (the target does not have it).
Test-only: VOX1_VERIFY_ALLOW_CPU=1 lets the functional check run on CPU (fixture wheels only; a real
flash-attn cannot run on CPU). Reports then say device "cpu (test-only)".
"""

import hashlib
import json
import math
import os
import shutil
import sys
import sysconfig
import time
import traceback
from typing import Any, Dict, List, Optional

SCHEMA_STATE = "vox1-target-state/1"
SCHEMA_VERIFY = "vox1-verify/1"
DIST_NAMES = ("flash_attn", "flash-attn")

# Tolerances against a float32 reference: fp16 carries ~1e-3 relative error per element, bf16 ~8e-3; the
# attention output is a convex combination of V values drawn from N(0, 1), so these bounds leave a margin of
# several times the error of a correct kernel while a wrong kernel misses by O(1).
TOLERANCE = {"float16": 1e-2, "bfloat16": 3e-2}
CASES = [(64, False), (64, True), (128, False), (128, True)]  # (head_dim, causal)
SEQLEN, HEADS = 128, 4


def _norm(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _find_flash_dist() -> Any:
    try:
        from importlib import metadata
    except ImportError:  # Python < 3.8
        return None
    for name in DIST_NAMES:
        try:
            return metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _distributions() -> Dict[str, str]:
    """name -> version of everything installed, from the dist-info folder names (reading every METADATA
    file of a big environment takes a second; the folder names carry the same facts)."""
    from importlib import metadata

    found: Dict[str, str] = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for item in names:
            if item.endswith(".dist-info") and item.count("-") == 1:
                name, version = item[: -len(".dist-info")].split("-")
                found.setdefault(_norm(name), version)
            elif item.endswith((".dist-info", ".egg-info")):
                try:
                    dist = metadata.PathDistribution.at(os.path.join(entry or ".", item))
                    name = dist.metadata["Name"]
                except Exception:
                    continue
                if name:
                    found.setdefault(_norm(name), dist.version)
    return found


def state() -> Dict[str, Any]:
    dists = _distributions()
    paths = sysconfig.get_paths()
    purelib = paths["purelib"]
    out: Dict[str, Any] = {
        "schema": SCHEMA_STATE,
        "executable": sys.executable,
        "version": "%d.%d.%d" % sys.version_info[:3],
        "purelib": purelib,
        "platlib": paths["platlib"],
        "scripts": paths["scripts"],
        "free_bytes": None,
        "distributions": dict(sorted(dists.items())),
        "flash_attn": None,
    }
    try:
        probe = purelib if os.path.isdir(purelib) else sys.prefix
        out["free_bytes"] = shutil.disk_usage(probe).free
    except OSError:
        pass
    try:
        import importlib.util

        spec = importlib.util.find_spec("flash_attn")  # finds, does not import
        out["module_origin"] = spec.origin if spec is not None else None
    except Exception as exc:
        out["module_origin"] = "unknown: " + _error_text(exc)
    dist = _find_flash_dist()
    if dist is not None:
        base = str(dist.locate_file(""))
        files: Dict[str, Optional[str]] = {}
        record = dist.read_text("RECORD")
        for rel in (dist.files or []):
            full = os.path.normpath(str(dist.locate_file(rel)))
            key = str(rel).replace("\\", "/")
            if os.path.isfile(full):
                files[key] = _sha256(full)
            else:
                files[key] = None
        info_dir = getattr(dist, "_path", None)
        out["flash_attn"] = {
            "name": dist.metadata["Name"],
            "version": dist.version,
            "location": base,
            "dist_info": str(info_dir) if info_dir is not None else None,
            "has_record": record is not None,
            "installer": (dist.read_text("INSTALLER") or "").strip() or None,
            "files": files,
        }
    return out


def _base(version: str) -> str:
    return version.split("+", 1)[0]


def _error_text(exc: BaseException) -> str:
    return "%s: %s" % (type(exc).__name__, exc)


def verify(expect: str, allow_cpu: bool, import_only: bool = False) -> Dict[str, Any]:
    out: Dict[str, Any] = {
        "schema": SCHEMA_VERIFY,
        "import": {"ok": False, "error": None, "seconds": None},
        "cuda_ext": {"ok": False, "error": None},
        "version": {"installed": None, "expected": expect, "ok": False},
        "torch": None,
        "functional": {"status": "not-run", "reason": None, "device": None, "cases": []},
    }
    dist = _find_flash_dist()
    if dist is not None:
        out["version"]["installed"] = dist.version
        # Official wheels carry +cuXYZ... only in the file name; mjun0812's carry it in the metadata too.
        out["version"]["ok"] = _base(dist.version).lower() == _base(expect).lower()
    t0 = time.perf_counter()
    try:
        import flash_attn  # noqa: F401

        out["import"]["ok"] = True
    except BaseException as exc:  # an extension can raise anything, even SystemExit
        out["import"]["error"] = _error_text(exc)
        out["import"]["traceback"] = traceback.format_exc()[-4000:]
    out["import"]["seconds"] = round(time.perf_counter() - t0, 4)
    try:
        import importlib

        importlib.import_module("flash_attn_2_cuda")

        out["cuda_ext"]["ok"] = True
    except BaseException as exc:
        out["cuda_ext"]["error"] = _error_text(exc)
    if import_only:
        out["functional"]["reason"] = "not asked for (import check only)"
        return out
    try:
        import torch
    except BaseException as exc:
        out["functional"]["reason"] = "torch does not import: " + _error_text(exc)
        return out
    out["torch"] = {"version": torch.__version__, "cuda": torch.version.cuda}
    if not (out["import"]["ok"] and out["cuda_ext"]["ok"]):
        out["functional"]["reason"] = "flash_attn does not import"
        return out
    device = None
    if torch.cuda.is_available():
        cap = torch.cuda.get_device_capability(0)
        out["functional"]["gpu"] = {"name": torch.cuda.get_device_name(0), "capability": "%d.%d" % cap}
        if cap >= (8, 0):
            device = "cuda"
        else:
            out["functional"]["reason"] = "GPU %s has compute capability %d.%d (< 8.0)" % (
                torch.cuda.get_device_name(0), cap[0], cap[1])
    elif torch.version.cuda is None:
        out["functional"]["reason"] = "no GPU here (torch %s is a CPU build)" % torch.__version__
    else:
        out["functional"]["reason"] = "no GPU here (torch.cuda.is_available() is False)"
    if device is None and allow_cpu:
        device = "cpu"
    if device is None:
        return out
    out["functional"]["device"] = device if device == "cuda" else "cpu (test-only)"
    out["functional"]["reason"] = None
    try:
        from flash_attn import flash_attn_func
    except BaseException as exc:
        out["functional"]["status"] = "failed"
        out["functional"]["reason"] = "cannot import flash_attn_func: " + _error_text(exc)
        return out
    dtypes = [("float16", torch.float16), ("bfloat16", torch.bfloat16)]
    if device == "cuda" and not torch.cuda.is_bf16_supported():
        dtypes = dtypes[:1]
    gen = torch.Generator(device="cpu").manual_seed(0)
    failed = False
    for name, dtype in dtypes:
        for head_dim, causal in CASES:
            case = _functional_case(torch, flash_attn_func, device, name=name, dtype=dtype, head_dim=head_dim,
                                    causal=causal, gen=gen)
            failed = failed or not case["ok"]
            out["functional"]["cases"].append(case)
    out["functional"]["status"] = "failed" if failed else "passed"
    return out


def _functional_case(torch: Any, flash_attn_func: Any, device: str, *, name: str, dtype: Any, head_dim: int,
                     causal: bool, gen: Any) -> Dict[str, Any]:
    """One flash_attn_func call against a float32 reference.

    flash_attn_func takes (batch, seqlen, nheads, headdim); scaled_dot_product_attention takes
    (batch, nheads, seqlen, headdim), hence the transposes. flash-attn aligns its causal mask to the bottom
    right and SDPA to the top left: identical here because seqlen_q == seqlen_k. The reference runs on the CPU
    from the very fp16/bf16 inputs, so neither TF32 nor a fused GPU kernel can blur it.
    """
    shape = (2, SEQLEN, HEADS, head_dim)
    q, k, v = (torch.randn(shape, generator=gen).to(device=device, dtype=dtype) for _ in range(3))
    case: Dict[str, Any] = {"dtype": name, "head_dim": head_dim, "causal": causal, "shape": list(shape),
                            "tolerance": TOLERANCE[name]}
    try:
        flash_attn_func(q, k, v, dropout_p=0.0, causal=causal)  # warm-up: kernel load and autotuning untimed
        _sync(torch, device)
        t = time.perf_counter()
        got = flash_attn_func(q, k, v, dropout_p=0.0, causal=causal)
        _sync(torch, device)
        case["ms"] = round((time.perf_counter() - t) * 1000.0, 3)
        if isinstance(got, (tuple, list)):  # return_attn_probs=True style results: the output comes first
            got = got[0]
        if tuple(got.shape) != shape or got.dtype != dtype:
            case["ok"] = False
            case["error"] = "output has shape %s and dtype %s, expected %s and %s" % (
                tuple(got.shape), got.dtype, shape, dtype)
            return case
        ref = torch.nn.functional.scaled_dot_product_attention(
            *(x.detach().cpu().float().transpose(1, 2) for x in (q, k, v)), is_causal=causal).transpose(1, 2)
        err = (got.detach().cpu().float() - ref).abs().max().item()
        if not math.isfinite(err):
            case["max_abs_err"] = None
            case["ok"] = False
            case["error"] = "output contains NaN or Inf"
            return case
        case["max_abs_err"] = err
        case["ok"] = bool(err <= TOLERANCE[name])
    except Exception as exc:  # RuntimeError: no kernel image ..., ValueError, ...; Ctrl-C still stops the run
        case["ok"] = False
        case["error"] = _error_text(exc)
    return case


def _sync(torch: Any, device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main(argv: List[str]) -> int:
    mode = argv[1] if len(argv) > 1 else "state"
    if mode == "state":
        doc = state()
    elif mode == "verify":
        expect = argv[argv.index("--expect") + 1] if "--expect" in argv else ""
        allow_cpu = os.environ.get("VOX1_VERIFY_ALLOW_CPU", "") == "1"
        doc = verify(expect, allow_cpu, import_only="--import-only" in argv)
    else:
        sys.stderr.write("unknown mode %r\n" % mode)
        return 2
    sys.stdout.write("\n" + json.dumps(doc) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
