"""The first-run wizard: detect → explain → (maybe) install → choose settings → write them → (maybe) start.

The decisions are pure (`plan_wizard`, `machine_summary`, `fa2_outlook`); the flow talks to the user only
through a `Ui` (click prompts, or the recommended answers for `--yes` / no terminal), installs only through
the install transaction, and writes the settings once, atomically, after it. Every question that decides a
change is asked before anything changes, so Ctrl-C at any prompt leaves nothing written; Ctrl-C during the
install rolls it back; the settings file is either the old one or the new one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from engine.settings import AttentionImpl, EngineSettings, SettingsError
from vox1_setup.bench_results import BenchRecommendation
from vox1_setup.doctor import WheelPick, fa2_blockers, gpus
from vox1_setup.environment import Environment, PythonInfo
from vox1_setup.errors import ExitCode, VoxError

WIZARD_SCHEMA = "vox1-wizard/1"


class Ui(Protocol):
    def say(self, text: str = "", **style: Any) -> None: ...

    def confirm(self, question: str, default: bool) -> bool: ...

    def choose(self, question: str, choices: Sequence[str], default: str) -> str: ...

    def batch_size(self, question: str, default: str) -> int | str: ...


@dataclass(frozen=True)
class WizardPlan:
    """What the wizard will recommend on this machine (pure: from facts)."""

    blockers: tuple[str, ...]  # why FA2 cannot run here (empty: it can, given a wheel)
    wheel: WheelPick | None
    advice: tuple[str, ...]  # why no wheel fits, when none does
    installed_version: str | None
    up_to_date: bool  # the installed flash-attn is the one the resolver picks
    attention: AttentionImpl
    batch_size: int | str
    import_error: str | None = None  # the installed flash-attn does not import: this is why
    on_gpu: bool = False  # VOX-1 will run on an NVIDIA GPU (a CUDA torch that sees one)

    @property
    def offer_install(self) -> bool:
        return not self.blockers and self.wheel is not None and not self.up_to_date


@dataclass
class WizardResult:
    target: str | None
    plan: WizardPlan
    installed: dict[str, Any] | None = None
    install_error: VoxError | None = None
    settings_file: Path | None = None
    settings: EngineSettings | None = None
    started: bool = False
    engine_exit: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.engine_exit is not None:
            return self.engine_exit
        if self.install_error is not None:
            return int(self.install_error.exit_code)
        return int(ExitCode.OK)

    def to_dict(self) -> dict[str, Any]:
        p = self.plan
        return {
            "schema": WIZARD_SCHEMA,
            "target": self.target,
            "fa2_possible": not p.blockers,
            "blockers": list(p.blockers),
            "wheel": None if p.wheel is None else {"filename": p.wheel.filename, "version": p.wheel.version,
                                                    "size": p.wheel.size_bytes},
            "advice": list(p.advice),
            "installed": self.installed,
            "install_error": None if self.install_error is None else {
                "message": self.install_error.message, "hint": self.install_error.hint,
                "exit_code": int(self.install_error.exit_code)},
            "settings_file": str(self.settings_file) if self.settings_file else None,
            "settings": self.settings.to_dict() if self.settings else None,
            "started": self.started,
            "engine_exit_code": self.engine_exit,
            "exit_code": self.exit_code,
            "notes": list(self.notes),
        }


def _base(version: str) -> str:
    return version.split("+", 1)[0]


def plan_wizard(env: Environment, wheel: WheelPick | None, advice: tuple[str, ...] = (),
                import_error: str | None = None, bench: BenchRecommendation | None = None) -> WizardPlan:
    """`import_error`: why the installed flash-attn does not import (None: it imports, or was not tried).
    `bench`: the last `vox1-setup bench` of this target; a measurement beats the defaults below."""
    blockers = fa2_blockers(env)
    installed = env.flash_attn.version if env.flash_attn else None
    up_to_date = (installed is not None and wheel is not None and _base(installed) == _base(wheel.version)
                  and import_error is None)
    # `auto` tries FA2 → sdpa → eager with a smoke test; where FA2 can never run, say sdpa outright.
    attention = AttentionImpl.SDPA if blockers else AttentionImpl.AUTO
    on_gpu = env.torch is not None and env.torch.build == "cuda" and bool(gpus(env))
    # `auto` on the CPU too: the engine then uses its CPU default (a bench measurement beats it, below).
    batch: int | str = "auto"
    if bench is not None:
        measured = AttentionImpl(bench.attention_implementation)
        if measured is not AttentionImpl.FLASH_ATTENTION_2 or not blockers:
            attention = measured
        if on_gpu and bench.batch_size is not None:
            batch = bench.batch_size
    return WizardPlan(blockers, wheel, advice, installed, up_to_date, attention, batch, import_error, on_gpu)


def env_file_mismatch(described: Environment, target_os: str, target: PythonInfo) -> str | None:
    """Why a machine description cannot stand for the target interpreter (None: it can). The wizard mixes the
    file's facts with what the target has installed, so both must be the same OS and Python version."""
    wanted, found = described.python.major_minor, target.major_minor
    differences = []
    if described.os != target_os:
        differences.append(f"the file describes {described.os}, the target runs on {target_os}")
    if wanted != found:
        differences.append(f"the file describes Python {wanted[0]}.{wanted[1]}, the target is Python "
                           f"{found[0]}.{found[1]}")
    return "; ".join(differences) or None


def machine_summary(env: Environment) -> list[str]:
    """Plain words: what this machine is, as far as VOX-1 is concerned."""
    host = env.host.get("os_name") if env.host else None
    lines = [f"Computer:   {host or env.os} ({env.machine})",
             f"Python:     {env.python.version}" + (f"  ({env.python.executable})" if env.python.executable else "")]
    t = env.torch
    if t is None:
        lines.append("torch:      not installed")
    elif not t.importable:
        lines.append("torch:      installed but does not import")
    elif t.build == "cuda":
        lines.append(f"torch:      {t.version} (NVIDIA CUDA {t.cuda})")
    elif t.build == "rocm":
        lines.append(f"torch:      {t.version} (AMD ROCm)")
    else:
        lines.append(f"torch:      {t.version} (CPU only)")
    found = gpus(env)
    if not found:
        lines.append("GPU:        no NVIDIA GPU found")
    for g in found:
        mem = f", {g.total_mib / 1024:.0f} GB" if g.total_mib else ""
        free = f" ({g.free_mib / 1024:.1f} GB free)" if g.free_mib is not None else ""
        lines.append(f"GPU {g.index}:      {g.label}{mem}{free}")
    if env.driver is not None:
        lines.append(f"Driver:     {env.driver.version}" + (f" (CUDA up to {env.driver.cuda})" if env.driver.cuda
                                                             else ""))
    lines.append("flash-attn: " + (env.flash_attn.version if env.flash_attn else "not installed"))
    return lines


def fa2_outlook(plan: WizardPlan) -> list[str]:
    """What FlashAttention 2 would and would not bring here: honest, short."""
    if plan.blockers:
        lines = ["FlashAttention 2 cannot work on this machine: " + "; ".join(plan.blockers) + ".",
                 "That is fine: VOX-1 uses sdpa, PyTorch's built-in attention. Nothing needs installing."]
        if plan.installed_version:
            lines.append(f"flash-attn {plan.installed_version} is installed but cannot run here: remove it with "
                         "`vox1-setup uninstall`.")
        return lines
    lines = [
        "FlashAttention 2 is optional. VOX-1 already runs fast with sdpa, PyTorch's built-in attention, which",
        "uses a fused flash/memory-efficient kernel on NVIDIA GPUs. FA2 can be a little faster on long inputs;",
        "it does not make room for much bigger batches, and in some generation workloads it is slower.",
        "With attention `auto`, VOX-1 tries FA2 with a one-token test and falls back to sdpa on any problem.",
    ]
    if plan.up_to_date:
        lines.append(f"flash-attn {plan.installed_version} is already installed and is the right wheel here.")
    elif plan.import_error:
        lines.append(f"flash-attn {plan.installed_version} is installed but does not import: {plan.import_error}")
    elif plan.wheel is None:
        lines.append("No prebuilt FlashAttention 2 wheel fits this machine"
                     + (f" ({plan.advice[0]})" if plan.advice else "") + ".")
    return lines


def _size(nbytes: int | None) -> str:
    if nbytes is None:
        return "size unknown"
    if nbytes >= 1024**3:
        return f"{nbytes / 1024**3:.1f} GB"
    return f"{nbytes / 1024**2:.0f} MB" if nbytes >= 1024**2 else f"{max(1, nbytes // 1024)} KB"


def validated_batch(text: str) -> int | str:
    """The batch-size answer, checked by the same rule as the settings file (raises SettingsError)."""
    return EngineSettings().with_value("batch_size", text).batch_size


InstallFn = Callable[[], dict[str, Any]]
StartFn = Callable[[Path], int]


def run_wizard(env: Environment, plan: WizardPlan, ui: Ui, *, settings_file: Path,
               current: EngineSettings | None, install: InstallFn | None, start: StartFn | None,
               offer_start: bool, save: Callable[[Path, EngineSettings], None]) -> WizardResult:
    """The interactive flow. Every question that decides a change is asked before anything changes, so
    Ctrl-C at any of them leaves everything as it was; then `install` runs the install transaction (raises
    VoxError after rolling back), `save` writes the settings atomically, and `start` hands over to the engine
    when the user accepts the last offer."""
    result = WizardResult(target=env.python.executable, plan=plan)
    step = iter(range(1, 10))
    ui.say(f"{next(step)}. Your machine", bold=True)
    for line in machine_summary(env):
        ui.say("   " + line)
    ui.say()
    ui.say(f"{next(step)}. FlashAttention 2 here", bold=True)
    for line in fa2_outlook(plan):
        ui.say("   " + line)
    ui.say()
    wheel = plan.wheel if plan.offer_install and install is not None else None
    want_install = False
    if wheel is not None:
        verb = "Repair" if plan.import_error else "Replace" if plan.installed_version else "Install"
        old = f" {plan.installed_version} with" if plan.installed_version else ""
        ui.say(f"{next(step)}. Install", bold=True)
        want_install = ui.confirm(f"   {verb} flash-attn{old} {wheel.version} ({wheel.filename}, "
                                  f"{_size(wheel.size_bytes)})?", True)
        if not want_install:
            ui.say("   Not installed. You can run `vox1-setup install` any time.")
        ui.say()
    attention, batch = _ask_settings(ui, plan, step, fa2_offered=plan.up_to_date or want_install)
    if want_install and wheel is not None and install is not None:
        ui.say(f"   Installing flash-attn {wheel.version}…", bold=True)
        try:
            result.installed = install()
            ui.say(f"   flash-attn {wheel.version} installed and verified.", fg="green")
        except VoxError as exc:
            if exc.exit_code in (ExitCode.ABORTED, ExitCode.ROLLBACK_FAILED):
                raise  # Ctrl-C (rolled back) or an unknown state: write nothing, ask nothing more
            result.install_error = exc
            ui.say(f"   The install failed and was rolled back: {exc.message}", fg="red")
            if exc.hint:
                ui.say(f"   hint: {exc.hint}")
            ui.say("   VOX-1 still works with sdpa.")
            if attention == AttentionImpl.FLASH_ATTENTION_2.value:
                attention = AttentionImpl.AUTO.value
                ui.say("   attention: auto instead of flash_attention_2, which cannot load now.", fg="yellow")
    base = current or EngineSettings()
    try:
        chosen = base.with_value("attention_implementation", attention).with_value("batch_size", batch)
    except SettingsError as exc:  # the Ui validates; this guards a bad default
        raise VoxError(f"invalid setting {exc}", exit_code=ExitCode.BAD_INPUT) from exc
    save(settings_file, chosen)
    result.settings_file, result.settings = settings_file, chosen
    ui.say(f"   Saved to {settings_file}", fg="green")
    ui.say()
    if start is not None and offer_start and ui.confirm("Start VOX-1 now?", True):
        result.started = True
        result.engine_exit = start(settings_file)
    return result


def _ask_settings(ui: Ui, plan: WizardPlan, step: Iterator[int], *, fa2_offered: bool) -> tuple[str, int | str]:
    """The attention implementation and the batch size (flash_attention_2 offered only where it will load)."""
    attention_choices = [AttentionImpl.AUTO.value, AttentionImpl.SDPA.value, AttentionImpl.EAGER.value]
    if fa2_offered and not plan.blockers:
        attention_choices.insert(1, AttentionImpl.FLASH_ATTENTION_2.value)
    recommended = AttentionImpl.AUTO if fa2_offered else plan.attention
    ui.say(f"{next(step)}. Settings", bold=True)
    ui.say(f"   attention: {recommended.value} is recommended"
           + (" (FA2 cannot run here)." if plan.blockers else " (FA2 when it works, else sdpa)."))
    attention = ui.choose("   Attention implementation", attention_choices, recommended.value)
    batch_default = str(plan.batch_size)
    if batch_default != "auto":
        why = " (measured by `vox1-setup bench`)."
    elif plan.on_gpu:
        why = " (VOX-1 measures what fits on your GPU)."
    else:
        why = " (VOX-1 uses its CPU default)."
    ui.say(f"   batch size: {batch_default} is recommended{why}")
    return attention, ui.batch_size("   Batch size (auto or a number ≥ 1)", batch_default)
