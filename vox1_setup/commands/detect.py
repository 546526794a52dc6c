"""`vox1-setup detect`: what this machine and the target Python are, as a summary or a vox1-env/1 document."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import click
from click.core import ParameterSource

from vox1_setup.commands._common import app_context, emit_json, output_options, python_option
from vox1_setup.environment import Environment, environment_to_dict, load_environment_file
from vox1_setup.errors import BadInputError
from vox1_setup.knowledge.gpus import family_for_capability, runs_flash_attn_2
from vox1_setup.probe.interpreter import DEFAULT_TIMEOUT, example_python
from vox1_setup.probe.nvidia import SMI_TIMEOUT


@click.command("detect")
@python_option
@click.option("--no-gpu", "no_gpu", is_flag=True, default=False,
              help="Skip the NVIDIA driver/GPU queries (NVML, nvidia-smi, /proc); summary only, not with --json/-o.")
@click.option("--no-torch", "no_torch", is_flag=True, default=False,
              help="Do not import torch in the target (fast; torch facts are left unknown); summary only, not "
                   "with --json/-o.")
@click.option("--timeout", type=click.FloatRange(min=1.0), default=DEFAULT_TIMEOUT, show_default=True,
              metavar="SECONDS",
              help=f"Give up on the target interpreter after this long (on nvidia-smi after at most "
                   f"{SMI_TIMEOUT:g} s).")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE", help="Also write the vox1-env/1 document to FILE (UTF-8), for --env elsewhere.")
# Not the shared env_file_option: VOX1_ENV_FILE set for resolve/install must not stop `detect` from detecting.
@click.option("--env", "env_file", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE",
              help="Show this vox1-env/1 document (e.g. one a user sent) instead of detecting this machine.")
@output_options
def detect(*, python: str | None, no_gpu: bool, no_torch: bool, timeout: float, output: Path | None,
           env_file: Path | None) -> None:
    """Report the machine (OS, RAM, disk, NVIDIA driver, GPUs) and the target Python (version, wheel tags,
    torch, flash-attn).

    \b
    Examples:
      vox1-setup detect
      vox1-setup detect --python C:\\VOX-1\\system_python\\python.exe
      vox1-setup detect --json -o env.json     (then: vox1-setup resolve --env env.json)
      vox1-setup detect --env env.json         (show a file someone sent, without detecting here)
    """
    app = app_context()
    from_env_var = click.get_current_context().get_parameter_source("python") == ParameterSource.ENVIRONMENT
    if env_file is not None:
        # VOX1_PYTHON set for the other commands must not block showing a saved document; an explicit --python must.
        if python is not None and not from_env_var:
            raise BadInputError("--env and --python exclude each other",
                                "--env shows a saved document; --python detects a live interpreter")
        env = load_environment_file(env_file)
    else:
        refuse_partial_document(no_torch=no_torch, no_gpu=no_gpu, output=output, as_json=app.json)
        from vox1_setup.probe import detect_environment

        try:
            env = detect_environment(python, paths=app.paths, gpu=not no_gpu, timeout=timeout, torch=not no_torch)
        except BadInputError as exc:
            if not from_env_var:
                raise
            # The user did not type this path: say where it came from.
            raise BadInputError(f"{exc.message} (the target came from VOX1_PYTHON)",
                                f"{exc.hint}; or unset VOX1_PYTHON" if exc.hint else "unset VOX1_PYTHON") from exc
    doc = environment_to_dict(env)
    if output is not None:
        write_document(output, doc)
    if app.json:
        emit_json(doc)
        return
    if app.quiet:
        click.echo(one_line(env))
        return
    for line in summary_lines(env, verbose=app.verbose > 0):
        click.echo(line)
    if output is not None:
        click.echo(f"\nwrote {output}")


def refuse_partial_document(*, no_torch: bool, no_gpu: bool, output: Path | None, as_json: bool) -> None:
    """A vox1-env/1 document holds facts: `torch: null` says "not installed", `driver: null` "no driver". What
    --no-torch/--no-gpu leave unknown would read as absent wherever the document is used, so none is written."""
    skipped = [flag for flag, on in (("--no-torch", no_torch), ("--no-gpu", no_gpu)) if on]
    if not skipped or (output is None and not as_json):
        return
    what = " and ".join(skipped)
    meanings = [meaning for meaning, on in (("torch: null means 'torch is not installed'", no_torch),
                                            ("driver: null and gpus: [] mean 'no NVIDIA GPU'", no_gpu)) if on]
    where = "-o/--output" if output is not None else "--json"
    raise BadInputError(f"{what} cannot be combined with {where}: a vox1-env/1 document must hold probed facts, "
                        f"and the skipped facts would read as absent ({'; '.join(meanings)})",
                        f"drop {what} to write the document, or leave out {where} to see the summary")


def write_document(path: Path, doc: dict[str, object]) -> None:
    """Atomic write (temp file beside the target, then replace): a half-written env file never exists."""
    target = path.expanduser()
    folder = target.parent
    if not folder.is_dir():
        raise BadInputError(f"cannot write {target}: folder {folder} does not exist",
                            "create the folder first or choose another path for --output")
    tmp: Path | None = None
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
        tmp = Path(name)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        tmp.replace(target)
    except OSError as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise BadInputError(f"cannot write {target}: {exc.strerror or exc}",
                            "choose a writable path for --output") from exc


# ----------------------------------------------------------------------------------------------------------
# Rendering (pure: Environment -> text lines)


def _gib(mib: object) -> str:
    return f"{mib / 1024:.1f} GiB" if isinstance(mib, int) else "?"


def torch_line(env: Environment) -> str:
    t = env.torch
    if t is None:
        if env.sources.get("torch") != "not probed":
            return "not installed"
        installed = env.packages.get("torch")
        return f"{installed} installed (not imported: --no-torch)" if installed else "not probed (--no-torch)"
    if not t.importable:
        return f"FAILS TO IMPORT: {(t.import_error or '').splitlines()[0] if t.import_error else 'unknown error'}"
    parts = [str(t.version)]
    if t.build == "cuda":
        parts.append(f"CUDA {t.cuda} build")
    elif t.build == "rocm":
        parts.append(f"ROCm {t.hip} build")
    else:
        parts.append("CPU-only build")
    if env.os == "linux" and t.cxx11abi is not None:
        parts.append(f"C++11 ABI {int(t.cxx11abi)}")
    if t.cuda_available is not None:
        if t.cuda_available:
            devices = ", ".join(f"sm_{d.capability.replace('.', '')}" for d in t.devices) or "no devices"
            parts.append(f"CUDA available ({devices})")
        else:
            parts.append("CUDA not available")
    return " · ".join(parts)


def gpu_line(env: Environment, index: int) -> str:
    g = env.gpus[index]
    parts = [g.name]
    if g.compute_capability:
        family = family_for_capability(g.compute_capability)
        mapped = " from name" if g.source and "name-table" in g.source else ""
        parts.append(f"compute {g.compute_capability}{mapped}" + (f" ({family})" if family else ""))
    else:
        parts.append("compute capability unknown")
    if g.memory_total_mib is not None:
        total = _gib(g.memory_total_mib)
        free = g.memory_free_mib
        parts.append(f"{free / 1024:.1f} of {total} free" if free is not None else total)
    fa2 = runs_flash_attn_2(g.compute_capability)
    if fa2 is False:
        parts.append("FlashAttention 2: no (needs compute 8.0+)")
    elif fa2 and g.capability_tuple is not None and g.capability_tuple >= (10, 0):
        # Blackwell: FIELD-NOTES §1.7 (flash-attn ≥ 2.7.3 compiled with nvcc ≥ 12.8, torch cu128+)
        parts.append("FlashAttention 2: only flash-attn ≥ 2.7.3 built for CUDA ≥ 12.8")
    elif fa2:
        parts.append("FlashAttention 2: supported")
    return " · ".join(parts)


def summary_lines(env: Environment, *, verbose: bool = False) -> list[str]:
    host = env.host
    width = 11

    def row(label: str, text: str) -> str:
        return f"{label:<{width}} {text}"

    machine = [str(host.get("os_name") or env.os), env.machine]
    if env.glibc:
        machine.append(f"glibc {env.glibc}")
    if isinstance(host.get("ram_total_mib"), int):
        available = host.get("ram_available_mib")
        machine.append(f"RAM {_gib(host['ram_total_mib'])}"
                       + (f" ({_gib(available)} available)" if isinstance(available, int) else ""))
    lines = [row("Machine", " · ".join(machine))]
    disk = disk_text(host.get("disk"), verbose=verbose)
    if disk:
        lines.append(row("Disk", disk))
    py = env.python
    impl = {"cpython": "CPython", "pypy": "PyPy"}.get(py.implementation, py.implementation)
    flags = " free-threaded" if py.gil_disabled else ""
    where = f" · {py.executable}" if py.executable else ""  # a saved document may not say
    lines.append(row("Python", f"{py.version} {impl}{flags}{where}"))
    tags = env.wheel_tags
    if tags:
        lines.append(row("Wheel tags", f"{tags[0]} (+{len(tags) - 1} more compatible)"))
    lines.append(row("torch", torch_line(env)))
    fa = env.flash_attn
    # Where it lives matters only when that is not the target's own site-packages (a user site, another venv).
    elsewhere = fa is not None and fa.location is not None and (verbose or not _same_folder(fa.location,
                                                                                          py.site_packages))
    lines.append(row("flash-attn", "not installed" if fa is None else
                     f"{fa.version} (in {fa.location})" if elsewhere else fa.version))
    if env.driver is not None:
        cuda = f"supports CUDA ≤ {env.driver.cuda}" if env.driver.cuda else "max CUDA unknown"
        via = f" · via {env.driver.source}" if env.driver.source else ""
        lines.append(row("Driver", f"NVIDIA {env.driver.version} · {cuda}{via}"))
    elif env.sources.get("nvidia") == "skipped (--no-gpu)":
        lines.append(row("Driver", "not checked (--no-gpu)"))
    else:
        asked = bool(env.sources.get("nvidia.attempts")) and not verbose  # a saved document may not say
        tried = " (NVML, nvidia-smi, /proc did not answer; -v says why)" if asked else ""
        lines.append(row("Driver", f"no NVIDIA driver found{tried}"))
    for i, g in enumerate(env.gpus):
        lines.append(row(f"GPU {g.index}", gpu_line(env, i)))
    if env.driver is not None and not env.gpus:
        lines.append(row("GPU", "driver answered but lists no GPU"))
    lines.extend(notes(env))
    if verbose and env.sources:
        lines.append("")
        lines.append("Sources:")
        lines.extend(f"  {key}: {value}" for key, value in sorted(env.sources.items()))
    return lines


def _same_folder(a: str, b: str | None) -> bool:
    return b is not None and os.path.normcase(os.path.normpath(a)) == os.path.normcase(os.path.normpath(b))


def disk_text(disk: object, *, verbose: bool = False) -> str:
    """'77.9 GiB free for the cache (/root/.cache/vox1-setup), 77.9 GiB for site-packages': one line; the
    site-packages folder is the target's own, shown in full only with -v."""
    if not isinstance(disk, dict):
        return ""
    parts = []
    for label, shown in (("cache", "the cache"), ("site_packages", "site-packages")):
        entry = disk.get(label)
        if not isinstance(entry, dict):
            continue
        free = entry.get("free_mib")
        amount = _gib(free) if isinstance(free, int) else "unknown"
        where = f" ({entry.get('path')})" if label == "cache" or verbose else ""
        parts.append(f"{amount} for {shown}{where}")
    if not parts:
        return ""
    return parts[0].replace(" for ", " free for ", 1) + "".join(f", {p}" for p in parts[1:])


def notes(env: Environment) -> list[str]:
    """Facts that contradict each other, said plainly (the detailed diagnosis is `doctor`'s job)."""
    out: list[str] = []
    if env.python.major_minor[0] < 3:
        out.append(f"note: Python {env.python.version} cannot run VOX-1, torch or flash-attn: point --python at "
                   f"VOX-1's own Python 3 (e.g. {example_python(env.os)})")
    t = env.torch
    if t is not None and not t.importable:
        out.append("note: torch is installed but does not import; see `vox1-setup doctor` for the cause and fix")
    if t is not None:
        out.extend(f"note: torch warned: {w.splitlines()[0]}" for w in t.warnings)
    if t is not None and t.build == "cpu" and env.gpus:
        out.append("note: this torch is a CPU-only build although an NVIDIA GPU is present: FlashAttention 2 "
                   "needs a CUDA build of torch")
    if t is not None and t.build == "cuda" and t.cuda_available is False and env.gpus:
        out.append("note: torch is a CUDA build but sees no GPU (driver too old for its CUDA, or "
                   "CUDA_VISIBLE_DEVICES hides it)")
    return out


def one_line(env: Environment) -> str:
    t = env.torch
    if t is None:
        torch_text = "torch not probed" if env.sources.get("torch") == "not probed" else "no torch"
    else:
        torch_text = f"torch {t.version}" if t.importable else "torch broken"
    gpu_text = ", ".join(g.name + (f" ({g.compute_capability})" if g.compute_capability else "")
                         for g in env.gpus) or "no NVIDIA GPU"
    return f"{env.os} {env.machine} · Python {env.python.version} · {torch_text} · {gpu_text}"
