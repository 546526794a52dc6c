"""`vox1-setup doctor`: what is wrong with this VOX-1 setup, and the one thing to do next."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from vox1_setup.commands._common import (
    app_context,
    env_file_option,
    manifest_option,
    output_options,
    python_option,
)
from vox1_setup.settings import settings_location_options, settings_path


@click.command()
@python_option
@env_file_option
@manifest_option
@settings_location_options
@click.option("--timeout", type=click.FloatRange(min=1.0), default=120.0, show_default=True, metavar="SECONDS",
              help="Limit for probing the target (import torch) and for importing flash-attn.")
@output_options
def doctor(*, python: str | None, env_file: Path | None, manifest: str | None, settings_file: Path | None,
            app_dir: Path | None, timeout: float) -> int:
    """Check the target Python, torch, GPU, driver, flash-attn, install state and settings.

    Exit code 0 when nothing failed (warnings allowed), 9 when a check failed.
    """
    from vox1_setup.doctor import examine, gather
    from vox1_setup.render import render_json, render_report

    app = app_context()
    env = None
    if env_file is not None:
        from vox1_setup.environment import load_environment_file

        env = load_environment_file(env_file)
    if env is None and not app.json and not app.quiet and sys.stderr.isatty():
        click.echo("checking this machine (imports torch once in the target; a few seconds)…", err=True)
    facts = gather(python, paths=app.paths, settings_path=settings_path(app.paths, settings_file, app_dir),
                   manifest_option=manifest, timeout=timeout, env=env)
    report = examine(facts)
    if app.json:
        click.echo(render_json(report, facts.env))
    elif app.quiet:
        for c in report.failed:
            click.echo(f"[FAIL] {c.id}: {c.summary}" + (f"\n       fix: {c.fix}" if c.fix else ""), err=True)
    else:
        click.echo(render_report(report, color=True, verbose=app.verbose > 0))
    return int(report.exit_code)
