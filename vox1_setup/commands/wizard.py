"""`vox1-setup wizard`: first-run setup in plain words (click prompts, or recommended answers with --yes)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from vox1_setup.commands._common import (
    app_context,
    emit_json,
    env_file_option,
    manifest_option,
    output_options,
    python_option,
)
from vox1_setup.errors import BadInputError
from vox1_setup.settings import settings_location_options, settings_path


class PromptUi:
    """Asks on the terminal (or on stdin with --interactive); bad answers are asked again."""

    def say(self, text: str = "", **style: Any) -> None:
        click.secho(text, **style)

    def confirm(self, question: str, default: bool) -> bool:
        return click.confirm(question, default=default)

    def choose(self, question: str, choices: Sequence[str], default: str) -> str:
        return str(click.prompt(question, type=click.Choice(list(choices)), default=default, show_choices=True))

    def batch_size(self, question: str, default: str) -> int | str:
        from engine.settings import SettingsError
        from vox1_setup.wizard import validated_batch

        def parse(text: str) -> int | str:
            try:
                return validated_batch(text)
            except SettingsError as exc:
                raise click.BadParameter(str(exc)) from exc

        value: int | str = click.prompt(question, default=default, value_proc=parse)
        return value


class RecommendedUi:
    """`--yes` (and no terminal): every question takes the recommended answer, shown as it is taken."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def say(self, text: str = "", **style: Any) -> None:
        if not self.quiet:
            click.secho(text, **style)

    def confirm(self, question: str, default: bool) -> bool:
        self.say(f"{question} {'yes' if default else 'no'} (recommended)")
        return default

    def choose(self, question: str, choices: Sequence[str], default: str) -> str:
        self.say(f"{question}: {default} (recommended)")
        return default

    def batch_size(self, question: str, default: str) -> int | str:
        from vox1_setup.wizard import validated_batch

        self.say(f"{question}: {default} (recommended)")
        return validated_batch(default)


@click.command()
@python_option
@env_file_option
@manifest_option
@settings_location_options
@click.option("-y", "--yes", is_flag=True, default=False, help="Take the recommended answer at every step.")
@click.option("--interactive/--no-interactive", "interactive", default=None,
              help="Ask questions even when stdin is not a terminal (answers from a pipe), or never ask. "
                   "Default: ask only on a terminal.")
@click.option("--start/--no-start", "start", default=None,
              help="Start VOX-1 at the end. Default: ask (never with --yes or without a terminal).")
@click.option("--offline", is_flag=True, default=False, help="Install only from the wheel cache.")
@output_options
def wizard(*, python: str | None, env_file: Path | None, manifest: str | None, settings_file: Path | None,
           app_dir: Path | None, yes: bool, interactive: bool | None, start: bool | None, offline: bool) -> int:
    """First-run setup: detect this machine, explain what FlashAttention 2 would bring, install it if a wheel
    fits (and you agree), choose attention and batch size, save the settings, and offer to start VOX-1.

    Without a terminal it never waits: it takes the recommended answers, as with --yes.
    """
    from vox1_setup.doctor import fa2_blockers, resolve_entry
    from vox1_setup.settings import read_settings, write_settings
    from vox1_setup.target import detect_and_import, direct_target, import_flash_attn
    from vox1_setup.wizard import plan_wizard, run_wizard

    app = app_context()
    asking = not yes and not app.json and (interactive if interactive is not None else app.interactive)
    ui: Any = PromptUi() if asking else RecommendedUi(quiet=app.quiet or app.json)
    if not asking and not yes and not app.json:
        ui.say("No terminal: taking the recommended answer at every step (as with --yes).", fg="yellow")
    path = settings_path(app.paths, settings_file, app_dir)
    current = None
    try:
        current = read_settings(path)
    except BadInputError as exc:  # an invalid file is replaced by the new choices
        ui.say(f"The settings file {path} is invalid and will be replaced: {exc}", fg="yellow")
    check = None
    if env_file is not None:
        from vox1_setup.environment import load_environment_file

        env = load_environment_file(env_file)
        # The file describes the machine; what is installed in the target is read from the target itself.
        from dataclasses import replace

        from vox1_setup.probe import probe_interpreter
        from vox1_setup.wizard import env_file_mismatch

        local = probe_interpreter(python, torch=False)
        mismatch = env_file_mismatch(env, local.os, local.python)
        if mismatch is not None:
            raise BadInputError(f"{env_file} does not describe the target {local.python.executable or python}: "
                                f"{mismatch}",
                                "drop --env to detect the target itself, or save a description of it with "
                                "`vox1-setup detect --python PATH --json -o FILE`")
        env = replace(env, flash_attn=local.flash_attn)
        target = local.python.executable or direct_target(python) or str(python)
    else:
        ui.say("Looking at this machine (imports torch once; a few seconds)…")
        env, check = detect_and_import(python, paths=app.paths, timeout=120.0)
        target = env.python.executable or direct_target(python) or str(python)
    pick, advice, manifest_error, entry = resolve_entry(env, manifest, app.paths)
    if manifest_error:
        advice = (manifest_error, *advice)
    import_error = None
    if env.flash_attn is not None and pick is not None and not fa2_blockers(env):
        # Installed already: make sure it really imports before calling it the right wheel.
        from vox1_setup.diagnose import explain

        if check is None:
            ui.say("Checking the installed flash-attn (imports it once)…")
            check = import_flash_attn(target)
        if check.installed and not check.ok:
            text = check.error or "the import did not finish"
            found = explain(text, env)
            import_error = found.summary if found else text.strip().splitlines()[-1]
    from vox1_setup.bench_results import last_recommendation
    from vox1_setup.target import same_target

    bench = last_recommendation(app.paths)
    if bench is not None and bench.python is not None and not same_target(bench.python, target):
        bench = None  # measured in another interpreter
    plan = plan_wizard(env, pick, advice, import_error, bench)

    def install() -> dict[str, Any]:
        from vox1_setup.installer import InstallOptions, WheelPlan
        from vox1_setup.installer import install as install_wheel

        assert entry is not None
        wheel_plan = WheelPlan(source=entry.url, filename=entry.filename, sha256=entry.sha256,
                               base_version=entry.base_version, size=entry.size)
        options = InstallOptions(offline=offline, progress=asking or app.interactive)
        outcome = install_wheel(target, wheel_plan, paths=app.paths, options=options,
                                note=lambda text: ui.say("   " + text))
        return outcome.to_dict()

    def start_engine(settings: Path) -> int:
        from vox1_setup import subproc
        from vox1_setup.commands.run import engine_command

        return subproc.run_attached(engine_command(target, settings, ()))

    offer_start = start if start is not None else asking
    if offer_start:
        from vox1_setup.commands.run import engine_installed

        offer_start = engine_installed(target)
    result = run_wizard(env, plan, ui, settings_file=path, current=current,
                        install=install if entry is not None else None,
                        start=start_engine if offer_start else None, offer_start=offer_start,
                        save=write_settings)
    if app.json:
        emit_json(result.to_dict())
    elif not result.started:
        ui.say("Done. Start VOX-1 with `vox1-setup run`; check this machine any time with `vox1-setup doctor`.",
               bold=True)
    return result.exit_code
