"""One renderer for check records: grouped text (coloured on a terminal, plain when piped) or JSON.

Pure: functions return strings; the command decides where they go. Status markers are ASCII (`[ OK ]`), so a
Windows console on a legacy code page prints them too; colour is ANSI via click.style and is stripped by
click.echo when the output is not a terminal.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import click

from vox1_setup.doctor import GROUPS, CheckResult, CheckStatus, DoctorReport, report_to_dict
from vox1_setup.environment import Environment

MARKERS: dict[CheckStatus, tuple[str, str]] = {
    CheckStatus.PASS: ("[ OK ]", "green"),
    CheckStatus.WARN: ("[WARN]", "yellow"),
    CheckStatus.FAIL: ("[FAIL]", "red"),
    CheckStatus.SKIP: ("[SKIP]", "bright_black"),
}


def _style(text: str, color: bool, **kw: Any) -> str:
    return click.style(text, **kw) if color else text


def render_checks(checks: Iterable[CheckResult], *, color: bool = False, verbose: bool = False) -> list[str]:
    """Records grouped in GROUPS order; details and fixes shown for warnings and failures (all with verbose)."""
    checks = list(checks)
    width = max((len(c.id) for c in checks), default=8)
    lines: list[str] = []
    order = list(GROUPS) + sorted({c.group for c in checks} - set(GROUPS))
    for group in order:
        members = [c for c in checks if c.group == group]
        if not members:
            continue
        lines.append(_style(GROUPS.get(group, group), color, bold=True))
        for c in members:
            marker, fg = MARKERS[c.status]
            lines.append(f"  {_style(marker, color, fg=fg, bold=c.status is CheckStatus.FAIL)} "
                         f"{c.id:<{width}}  {c.summary}")
            pad = " " * (11 + width)  # under the summary
            show_more = verbose or c.status in (CheckStatus.WARN, CheckStatus.FAIL)
            if show_more:
                lines.extend(f"{pad}{d}" for d in c.details)
                if c.cause and verbose:
                    lines.append(f"{pad}cause: {c.cause}")
            if c.fix and show_more:
                lines.append(f"{pad}{_style('fix:', color, fg=fg if c.status is not CheckStatus.PASS else None)} "
                             f"{c.fix}")
        lines.append("")
    return lines


def render_report(report: DoctorReport, *, color: bool = False, verbose: bool = False) -> str:
    head = "vox1-setup doctor" + (f" — {report.target}" if report.target else "")
    lines = [_style(head, color, bold=True), ""]
    lines += render_checks(report.checks, color=color, verbose=verbose)
    r = report.recommendation
    lines.append(_style("Recommendation", color, bold=True))
    lines.append(f"  attention:   {r.attention}  ({r.attention_reason})")
    lines.append(f"  batch size:  {r.batch_size}  ({r.batch_reason})")
    lines.append(f"  next:        {_style(r.next_command, color, bold=True)}  ({r.next_reason})")
    lines.append("")
    counts = report.counts()
    tally = (f"{counts['pass']} passed, {counts['warn']} warning(s), {counts['fail']} failed, "
             f"{counts['skip']} skipped")
    verdict = ("FAILED" if report.failed else "OK")
    lines.append(_style(f"{verdict}: {tally}", color, fg="red" if report.failed else "green", bold=True))
    return "\n".join(lines)


def render_json(report: DoctorReport, env: Environment | None = None) -> str:
    return json.dumps(report_to_dict(report, env), indent=2)
