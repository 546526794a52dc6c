"""The Windows launchers: CRLF, quoting, and what they run.

cmd.exe is not available here, so a small interpreter for exactly the statements the .bat files use walks
their control flow (a statement it does not know fails the test, which keeps the files in that subset). Each
Python command line the walk reaches is split as Windows splits a command line and executed through the real
CLI (`run_cli`), so the CLI must accept exactly what the .bat passes; the exit code flows back into the walk.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.recording_engine import make_engine_python, recorded
from vox1_setup.cli import run_cli

ROOT = Path(__file__).resolve().parents[1]
INSTALL_BAT = ROOT / "Install-Flash-Attention.bat"
RUN_BAT = ROOT / "RUN-VOX-1.bat"
BATS = (INSTALL_BAT, RUN_BAT)


def bat_lines(path: Path) -> list[str]:
    return path.read_bytes().decode("ascii").split("\r\n")


@pytest.mark.parametrize("path", BATS, ids=lambda p: p.name)
def test_crlf_line_endings_and_ascii(path: Path) -> None:
    data = path.read_bytes()
    assert data.endswith(b"\r\n")
    assert b"\n" not in data.replace(b"\r\n", b"")  # no bare LF
    assert b"\r" not in data.replace(b"\r\n", b"")  # no bare CR
    data.decode("ascii")  # cmd.exe reads the OEM code page: stay ASCII


def test_gitattributes_keeps_crlf() -> None:
    assert "*.bat text eol=crlf" in (ROOT / ".gitattributes").read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("path", BATS, ids=lambda p: p.name)
def test_paths_are_always_quoted_and_no_blocks_are_used(path: Path) -> None:
    for line in bat_lines(path):
        code = line.strip()
        if not code or code.lower().startswith(("rem ", "echo")):
            continue
        for m in re.finditer(r"%(VOX1_APP_DIR|PY_EXE)[^%]*%", code):
            assert code[: m.start()].count('"') % 2 == 1, f"unquoted path in: {line}"
        # "C:\Program Files (x86)\VOX-1" ends a ( ... ) block early: the files use goto instead.
        assert "(" not in code and ")" not in code, f"parenthesised block in: {line}"


@pytest.mark.parametrize("path", BATS, ids=lambda p: p.name)
def test_every_goto_has_its_label(path: Path) -> None:
    lines = bat_lines(path)
    labels = {ln[1:].strip().lower() for ln in lines if ln.startswith(":")}
    for ln in lines:
        m = re.search(r"\bgoto\s+:?(\w+)", ln, flags=re.I)
        if m:
            assert m.group(1).lower() in labels, ln


# --------------------------------------------------------------------------------------------------------------
# A walk through the .bat with cmd.exe's semantics for the statements used.


def split_windows_args(text: str) -> list[str]:
    """CommandLineToArgvW rules: whitespace separates, quotes group, 2n backslashes + quote = n backslashes."""
    args: list[str] = []
    cur, in_quotes, has_arg, i = "", False, False, 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            j = i
            while j < len(text) and text[j] == "\\":
                j += 1
            n = j - i
            if j < len(text) and text[j] == '"':
                cur += "\\" * (n // 2)
                if n % 2:
                    cur += '"'
                    i = j + 1
                    has_arg = True
                    continue
                i = j
                continue
            cur += "\\" * n
            i = j
            has_arg = True
            continue
        if c == '"':
            in_quotes = not in_quotes
            has_arg = True
        elif c in " \t" and not in_quotes:
            if has_arg:
                args.append(cur)
            cur, has_arg = "", False
        else:
            cur += c
            has_arg = True
        i += 1
    if has_arg:
        args.append(cur)
    return args


@dataclass
class World:
    app_dir: str  # as %~dp0 gives it, with the trailing backslash
    bundled: bool = True
    on_path: frozenset[str] = frozenset({"py", "python"})
    env: dict[str, str] = field(default_factory=dict)
    script_args: str = ""


@dataclass
class Walk:
    commands: list[list[str]] = field(default_factory=list)  # argv of every program run
    env_at_run: list[dict[str, str]] = field(default_factory=list)
    paused: bool = False
    exit_code: int | None = None


def walk(path: Path, world: World, runner: Callable[[list[str], dict[str, str]], int]) -> Walk:
    lines = [ln.strip() for ln in bat_lines(path)]
    labels = {ln[1:].strip().lower(): i for i, ln in enumerate(lines) if ln.startswith(":")}
    env = dict(world.env)
    errorlevel = 0
    result = Walk()

    def expand(text: str) -> str:
        text = text.replace("%~dp0", world.app_dir).replace("%*", world.script_args)

        def var(m: re.Match[str]) -> str:
            name, sub = m.group(1), m.group(2)
            value = str(errorlevel) if name.upper() == "ERRORLEVEL" else env.get(name, "")
            if sub:
                start, _, length = sub.partition(",")
                s = int(start)
                value = value[s:] if not length else value[s:int(length)] if int(length) < 0 else \
                    value[s:s + int(length)]
            return value

        return re.sub(r"%(\w+)(?::~(-?\d+(?:,-?\d+)?))?%", var, text)

    i, steps = 0, 0
    while i < len(lines):
        steps += 1
        assert steps < 500, "the walk does not end"
        raw = lines[i]
        i += 1
        low = raw.lower()
        if not raw or raw.startswith(":") or low.startswith(("rem ", "@echo off", "echo", "setlocal", "cd /d ")):
            continue
        line = expand(raw)
        if m := re.fullmatch(r'set "(\w+)=(.*)"', line):
            env[m.group(1)] = m.group(2)
            continue
        if m := re.fullmatch(r'if "(.*)"=="(.*)" (.*)', line):
            if m.group(1) == m.group(2):
                lines[i - 1] = m.group(3)  # run the statement in place
                i -= 1
            continue
        if m := re.fullmatch(r'if exist "(.*)" goto (\w+)', line):
            assert m.group(1) == world.app_dir.rstrip("\\") + "\\system_python\\python.exe"
            if world.bundled:
                i = labels[m.group(2).lower()]
            continue
        if m := re.fullmatch(r"where (\w+) >nul 2>nul", line):
            errorlevel = 0 if m.group(1) in world.on_path else 1
            continue
        if m := re.fullmatch(r"if not errorlevel 1 goto (\w+)", line):
            if errorlevel < 1:
                i = labels[m.group(1).lower()]
            continue
        if m := re.fullmatch(r"goto (\w+)", line):
            i = labels[m.group(1).lower()]
            continue
        if m := re.fullmatch(r"if not defined (\w+) pause", line):
            result.paused = result.paused or m.group(1) not in env
            continue
        if m := re.fullmatch(r"exit /b (\d+)", line):
            result.exit_code = int(m.group(1))
            return result
        argv = split_windows_args(line)
        assert argv[0] in (env.get("PY_EXE"), "py", "python"), f"unknown statement: {raw}"
        result.commands.append(argv)
        result.env_at_run.append(dict(env))
        errorlevel = runner(argv, env)
    raise AssertionError("the .bat ended without exit /b: the window would not report an exit code")


def cli_runner(monkeypatch: pytest.MonkeyPatch, extra_env: dict[str, str]) -> Callable[[list[str], dict[str, str]],
                                                                                         int]:
    """Execute `<python> [-3] -m vox1_setup ARGS` through the real CLI, with the variables the .bat set."""

    def run(argv: list[str], env: dict[str, str]) -> int:
        args = argv[1:]
        if args[:1] == ["-3"]:
            args = args[1:]
        assert args[:2] == ["-m", "vox1_setup"], argv
        with monkeypatch.context() as m:
            for key, value in {**env, **extra_env}.items():
                if key.startswith("VOX1_") or key in extra_env:
                    m.setenv(key, value)
            return run_cli(args[2:])

    return run


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "Program Files (x86)" / "VOX-1 & friends"
    folder.mkdir(parents=True)
    monkeypatch.chdir(folder)  # the .bat does `cd /d` into its folder
    return folder


@pytest.fixture
def vox_python(tmp_path: Path) -> Path:
    """VOX-1's Python with a recording engine (no torch: the wizard has nothing to install there)."""
    return make_engine_python(tmp_path / "system_python")


@pytest.mark.parametrize("case", [
    (True, frozenset({"py", "python"}), "bundled"),
    (False, frozenset({"py", "python"}), "py"),
    (False, frozenset({"python"}), "python"),
], ids=["bundled", "py-launcher", "python-on-path"])
def test_install_bat_runs_the_wizard_with_the_first_python_found(
        app: Path, vox_python: Path, monkeypatch: pytest.MonkeyPatch, case: tuple[bool, frozenset[str], str]) -> None:
    bundled, on_path, program = case
    world = World(app_dir=str(app) + "\\", bundled=bundled, on_path=on_path)
    result = walk(INSTALL_BAT, world, cli_runner(monkeypatch, {"VOX1_PYTHON": str(vox_python)}))
    assert len(result.commands) == 1
    argv = result.commands[0]
    expected_head = {"bundled": [str(app) + "\\system_python\\python.exe"], "py": ["py", "-3"],
                     "python": ["python"]}[program]
    assert argv[: len(expected_head)] == expected_head
    assert argv[len(expected_head):] == ["-m", "vox1_setup", "wizard", "--yes", "--no-start"]
    assert result.env_at_run[0]["VOX1_APP_DIR"] == str(app)  # no trailing backslash before a quote
    assert result.exit_code == 0 and result.paused
    settings = json.loads((app / "vox1-settings.json").read_text(encoding="utf-8"))
    assert settings["attention_implementation"] == "sdpa"  # no torch in that Python: nothing to install


def test_install_bat_reports_a_failure_code_and_keeps_the_window_open(app: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    not_python = tmp_path / "python.exe"
    not_python.write_text("MZ", encoding="utf-8")
    world = World(app_dir=str(app) + "\\")
    result = walk(INSTALL_BAT, world, cli_runner(monkeypatch, {"VOX1_PYTHON": str(not_python)}))
    assert result.exit_code == 2 and result.paused


def test_install_bat_without_any_python(app: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world = World(app_dir=str(app) + "\\", bundled=False, on_path=frozenset())
    result = walk(INSTALL_BAT, world, cli_runner(monkeypatch, {}))
    assert result.commands == [] and result.exit_code == 2 and result.paused


def test_no_pause_for_automation(app: Path, vox_python: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world = World(app_dir=str(app) + "\\", env={"VOX1_NO_PAUSE": "1"})
    result = walk(INSTALL_BAT, world, cli_runner(monkeypatch, {"VOX1_PYTHON": str(vox_python)}))
    assert result.exit_code == 0 and not result.paused


def test_run_bat_hands_over_to_the_engine_with_the_user_arguments(app: Path, vox_python: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    record = tmp_path / "record.json"
    (app / "vox1-settings.json").write_text('{"model_path": "models"}', encoding="utf-8")  # run needs a model
    world = World(app_dir=str(app) + "\\", script_args='--text "hello world"')
    runner = cli_runner(monkeypatch, {"VOX1_PYTHON": str(vox_python), "ENGINE_RECORD": str(record)})
    result = walk(RUN_BAT, world, runner)
    assert result.commands[0][-5:] == ["vox1_setup", "run", "--", "--text", "hello world"]
    assert recorded(record)["argv"] == ["--settings", str(app / "vox1-settings.json"),
                                                              "--text", "hello world"]
    assert result.exit_code == 0 and not result.paused  # a normal close needs no key press


def test_run_bat_passes_the_engine_failure_on(app: Path, vox_python: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    (app / "vox1-settings.json").write_text('{"model_path": "models"}', encoding="utf-8")  # run needs a model
    world = World(app_dir=str(app) + "\\")
    runner = cli_runner(monkeypatch, {"VOX1_PYTHON": str(vox_python), "ENGINE_RECORD": str(tmp_path / "r.json"),
                                      "ENGINE_EXIT": "5"})
    result = walk(RUN_BAT, world, runner)
    assert result.exit_code == 5 and result.paused


@pytest.mark.parametrize(("text", "args"), [
    ('run -- --text "hello world"', ["run", "--", "--text", "hello world"]),
    ('"C:\\Program Files (x86)\\VOX-1\\system_python\\python.exe" -m x',
     ["C:\\Program Files (x86)\\VOX-1\\system_python\\python.exe", "-m", "x"]),
    ('a "b\\\\" c', ["a", "b\\", "c"]),
])
def test_windows_argument_splitting(text: str, args: list[str]) -> None:
    assert split_windows_args(text) == args


def test_run_bat_without_any_python_keeps_the_window_open(app: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world = World(app_dir=str(app) + "\\", bundled=False, on_path=frozenset())
    result = walk(RUN_BAT, world, cli_runner(monkeypatch, {}))
    assert result.commands == [] and result.exit_code == 2 and result.paused
