# mypy: ignore-errors
# (no annotations on purpose: this file must parse on interpreters older than the tool; its behaviour is
# tested by running it in real venvs, see tests/test_probe.py)
"""Facts about the Python interpreter that runs this file, printed as ONE JSON object on stdout.

vox1-setup runs this script BY PATH inside the target interpreter (VOX-1's bundled Python), never imports it.
Rules: standard library only; syntax old Pythons can parse (no f-strings, no annotations); never crash:
every failure becomes data in the answer. torch is imported at most once and only when asked
(`--no-torch` skips it); flash-attn is looked up in the installed metadata, never imported.

Schema `vox1-probe/1`: {"schema", "python": {...}, "platform": {...}, "torch": null|{...},
"flash_attn": null|{...}, "packages": {dist: version}, "timings": {...}}.
"""

import json
import os
import sys
import time

PROBE_SCHEMA = "vox1-probe/1"

# Distributions whose installed versions later steps need (no import, metadata only).
WATCHED_DISTRIBUTIONS = ("torch", "transformers", "flash-attn", "flash_attn", "pip", "numpy", "accelerate",
                         "kernels", "qwen-tts")


def _error_text(exc):
    text = "%s: %s" % (type(exc).__name__, exc)
    return text[:4000]


def _config_var(name):
    try:
        import sysconfig

        return sysconfig.get_config_var(name)
    except Exception:
        return None


def python_facts():
    import platform

    try:
        import sysconfig

        sys_platform = sysconfig.get_platform()
        paths = sysconfig.get_paths()
    except Exception:
        sys_platform, paths = None, {}
    ext_suffixes = []
    try:
        import importlib.machinery

        ext_suffixes = list(importlib.machinery.EXTENSION_SUFFIXES)
    except Exception:
        pass
    with_debug = _config_var("Py_DEBUG")
    # Windows has no Py_DEBUG: mirrors packaging.tags._cpython_abis
    debug = bool(with_debug) if with_debug is not None else (
        hasattr(sys, "gettotalrefcount") or "_d.pyd" in ext_suffixes)
    impl = getattr(sys, "implementation", None)
    return {
        "version": platform.python_version(),
        "version_info": list(sys.version_info[:3]),
        "implementation": impl.name if impl is not None else platform.python_implementation().lower(),
        "gil_disabled": bool(_config_var("Py_GIL_DISABLED")),
        "debug": debug,
        "pymalloc": _config_var("WITH_PYMALLOC"),
        "executable": sys.executable or None,
        "prefix": sys.prefix,
        "base_prefix": getattr(sys, "base_prefix", sys.prefix),
        "soabi": _config_var("SOABI"),
        "ext_suffix": _config_var("EXT_SUFFIX"),
        "sysconfig_platform": sys_platform,
        "pointer_bits": 64 if sys.maxsize > 2 ** 32 else 32,
        "site_packages": paths.get("purelib"),
        "platlib": paths.get("platlib"),
    }


def _glibc_version():
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION")  # "glibc 2.35"
        if text:
            name, _, version = text.partition(" ")
            if name == "glibc" and version:
                return version, "os.confstr"
    except (AttributeError, ValueError, OSError):
        pass
    try:
        import platform

        lib, version = platform.libc_ver()
        if lib == "glibc" and version:
            return version, "platform.libc_ver"
    except Exception:
        pass
    return None, None


def _musl_version():
    """The musl loader prints 'musl libc (x86_64)\\nVersion 1.2.4' when run without arguments."""
    import glob
    import re
    import subprocess

    for loader in sorted(glob.glob("/lib/ld-musl-*.so.1")):
        try:
            proc = subprocess.Popen([loader], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            _, err = proc.communicate()
            m = re.search(r"Version (\d+)\.(\d+)", err.decode("utf-8", "replace"))
            if m:
                return "%s.%s" % (m.group(1), m.group(2))
        except Exception:
            continue
    return None


def platform_facts():
    import platform

    system = platform.system().lower()
    facts = {
        "system": system,
        "release": platform.release(),
        "os_version": platform.version(),
        "machine": platform.machine(),
        "glibc": None,
        "glibc_source": None,
        "musl": None,
        "mac_version": None,
    }
    if system == "linux":
        facts["glibc"], facts["glibc_source"] = _glibc_version()
        if facts["glibc"] is None:
            facts["musl"] = _musl_version()
    elif system == "darwin":
        facts["mac_version"] = platform.mac_ver()[0] or None
    return facts


def _distribution(name):
    try:
        from importlib import metadata
    except ImportError:  # Python < 3.8: no metadata API; report unknown rather than guess
        return None
    try:
        return metadata.distribution(name)
    except Exception:
        return None


def _dist_location(dist):
    try:
        return str(dist.locate_file(""))
    except Exception:
        return None


def packages_facts():
    out = {}
    for name in WATCHED_DISTRIBUTIONS:
        dist = _distribution(name)
        if dist is not None:
            key = name.replace("_", "-")
            out.setdefault(key, dist.version)
    return out


def flash_attn_facts():
    for name in ("flash-attn", "flash_attn"):
        dist = _distribution(name)
        if dist is not None:
            return {"version": dist.version, "location": _dist_location(dist), "distribution": name}
    return None


def _torch_spec():
    try:
        import importlib.util

        spec = importlib.util.find_spec("torch")
    except Exception:
        return None, None
    if spec is None:
        return None, None
    origin = spec.origin
    if origin is None and spec.submodule_search_locations:
        origin = next(iter(spec.submodule_search_locations))
    return spec, origin


# Warnings worth reporting: torch says "CUDA initialization: The NVIDIA driver on your system is too old" or
# "... is not compatible with the current PyTorch installation" as UserWarnings; deprecations are noise.
_NOISE_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning, ImportWarning)


def torch_facts(check_cuda):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        facts = _torch_facts(check_cuda)
    if facts is not None:
        seen = []
        for item in caught:
            if issubclass(item.category, _NOISE_WARNINGS):
                continue
            text = ("%s: %s" % (item.category.__name__, item.message))[:1000]
            if text not in seen:
                seen.append(text)
        facts["warnings"] = seen[:10]
    return facts


def _torch_facts(check_cuda):
    spec, origin = _torch_spec()
    dist = _distribution("torch")
    if spec is None and dist is None:
        return None
    facts = {
        "version": None,
        "metadata_version": dist.version if dist is not None else None,
        "cuda": None,
        "hip": None,
        "cxx11abi": None,
        "cuda_available": None,
        "device_count": None,
        "devices": [],
        "arch_list": None,
        "import_error": None,
        "location": os.path.dirname(origin) if origin else None,
        "errors": {},
    }
    if spec is None:
        facts["import_error"] = "distribution 'torch' is installed but no importable 'torch' module was found"
        return facts
    started = time.time()
    try:
        import torch
    except BaseException as exc:  # a broken torch may raise anything, even SystemExit
        if isinstance(exc, KeyboardInterrupt):
            raise
        facts["import_error"] = _error_text(exc)
        facts["import_seconds"] = round(time.time() - started, 3)
        return facts
    facts["import_seconds"] = round(time.time() - started, 3)
    facts["version"] = str(getattr(torch, "__version__", None) or facts["metadata_version"] or "") or None
    facts["location"] = os.path.dirname(getattr(torch, "__file__", None) or "") or facts["location"]
    errors = facts["errors"]

    def attempt(key, fn):
        try:
            return fn()
        except Exception as exc:
            errors[key] = _error_text(exc)
            return None

    version_mod = getattr(torch, "version", None)
    facts["cuda"] = attempt("cuda", lambda: getattr(version_mod, "cuda", None))
    facts["hip"] = attempt("hip", lambda: getattr(version_mod, "hip", None))
    abi = attempt("cxx11abi", lambda: torch._C._GLIBCXX_USE_CXX11_ABI)
    facts["cxx11abi"] = bool(abi) if abi is not None else None
    if check_cuda:
        facts["cuda_available"] = attempt("cuda_available", lambda: bool(torch.cuda.is_available()))
        if facts["cuda_available"]:
            count = attempt("device_count", lambda: int(torch.cuda.device_count()))
            facts["device_count"] = count
            for index in range(count or 0):
                cap = attempt("device_%d" % index, lambda i=index: torch.cuda.get_device_capability(i))
                name = attempt("device_%d" % index, lambda i=index: torch.cuda.get_device_name(i))
                if cap is not None:
                    facts["devices"].append({"index": index, "name": name or "",
                                             "capability": "%d.%d" % (cap[0], cap[1])})
        elif facts["cuda_available"] is not None:
            facts["device_count"] = 0
        arch = attempt("arch_list", lambda: list(torch.cuda.get_arch_list()))
        facts["arch_list"] = [str(a) for a in arch] if arch is not None else None
    return facts


def collect(with_torch, check_cuda):
    started = time.time()
    answer = {
        "schema": PROBE_SCHEMA,
        "python": python_facts(),
        "platform": platform_facts(),
        "packages": packages_facts(),
        "flash_attn": flash_attn_facts(),
        "torch": None,
        "torch_probed": bool(with_torch),
    }
    if with_torch:
        answer["torch"] = torch_facts(check_cuda)
    else:  # where torch would come from, without importing it
        answer["torch_origin"] = _torch_spec()[1]
    answer["timings"] = {"total_seconds": round(time.time() - started, 3)}
    return answer


def main(argv):
    # The script's own folder is vox1_setup/probe: keep its modules (e.g. nvidia.py) from shadowing the
    # target's packages (torch's CUDA wheels import the `nvidia` namespace package).
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    # Anything torch or a sitecustomize prints must not corrupt the answer: fd 1 goes to stderr while
    # collecting, and the JSON is written to a saved copy of the real stdout.
    sys.stdout.flush()
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        answer = collect("--no-torch" not in argv, "--no-cuda" not in argv)
    except BaseException as exc:  # report, never crash: the caller reads JSON
        if isinstance(exc, KeyboardInterrupt):
            raise
        answer = {"schema": PROBE_SCHEMA, "fatal": _error_text(exc)}
    finally:
        sys.stdout.flush()
        os.dup2(real_stdout, 1)
        os.close(real_stdout)
    sys.stdout.write(json.dumps(answer, sort_keys=True) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
