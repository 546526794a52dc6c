"""`vox1-setup run`: the hand-off to `TARGET -m engine --settings FILE [ARGS]`, with a fixture engine that
records how it was started (a real venv, no models)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.recording_engine import make_engine_python, recorded
from tests.support.venvs import make_venv
from vox1_setup.cli import run_cli
from vox1_setup.errors import ExitCode


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m` looks in the current folder first: run from elsewhere than the checkout's own engine/."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def _model_set(vox1_home: Path) -> None:
    """The engine needs a model: the default settings file names one (tests of a missing one delete it)."""
    settings = vox1_home / "config" / "settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text('{"model_path": "/models/vox-1"}', encoding="utf-8")


@pytest.fixture
def target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "VOX-1 (x86)" / "system_python"
    root.parent.mkdir()
    py = make_engine_python(root)
    monkeypatch.setenv("ENGINE_RECORD", str(tmp_path / "record.json"))
    return py


def _record(tmp_path: Path) -> dict[str, object]:
    return recorded(tmp_path / "record.json")


def test_hand_off_passes_settings_and_arguments(target: Path, tmp_path: Path, vox1_home: Path,
                                                capfd: pytest.CaptureFixture[str]) -> None:
    code = run_cli(["run", "--python", str(target), "--", "--text", "hello world", "--json"])
    assert code == 0
    rec = _record(tmp_path)
    assert rec["argv"] == ["--settings", str(vox1_home / "config" / "settings.json"), "--text", "hello world",
                           "--json"]
    assert Path(str(rec["executable"])).parent == target.parent
    out, err = capfd.readouterr()
    assert "engine: Attention implementation in use" in out  # the engine's own output reaches the user
    assert "starting VOX-1" in err


@pytest.mark.parametrize("settings_file", [None, "my settings.json"])
def test_no_model_path_stops_with_the_exact_command_and_writes_nothing(
        settings_file: str | None, target: Path, tmp_path: Path, vox1_home: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    (vox1_home / "config" / "settings.json").unlink()
    extra = ["--settings-file", str(tmp_path / settings_file)] if settings_file else []
    assert run_cli(["run", "--python", str(target), *extra]) == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert "no model_path" in err
    where = f' --settings-file "{tmp_path / settings_file}"' if settings_file else ""
    assert f'vox1-setup settings set model_path "<folder>"{where}`' in err
    assert not (tmp_path / "record.json").exists()
    assert not (vox1_home / "config" / "settings.json").exists() and not (tmp_path / "my settings.json").exists()


def test_engine_exit_code_is_returned(target: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGINE_EXIT", "7")
    assert run_cli(["run", "--python", str(target)]) == 7


def test_app_dir_settings_and_vox1_python(target: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = target.parents[1]
    (app / "vox1-settings.json").write_text('{"attention_implementation": "eager", "model_path": "m"}',
                                            encoding="utf-8")
    monkeypatch.setenv("VOX1_PYTHON", str(target))
    assert run_cli(["run", "--app-dir", str(app)]) == 0
    assert _record(tmp_path)["argv"] == ["--settings", str(app / "vox1-settings.json")]


def test_invalid_settings_stop_before_the_engine(target: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"dtype": "int8"}', encoding="utf-8")
    assert run_cli(["run", "--python", str(target), "--settings-file", str(bad)]) == ExitCode.BAD_INPUT
    assert "dtype" in capsys.readouterr().err
    assert not (tmp_path / "record.json").exists()


def test_target_without_the_engine_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    py = make_venv(tmp_path / "bare", pip=False)
    assert run_cli(["run", "--python", str(py)]) == ExitCode.BAD_INPUT
    assert "engine is not installed" in capsys.readouterr().err


def test_not_a_python_is_bad_input(tmp_path: Path) -> None:
    fake = tmp_path / "python.exe"
    fake.write_text("MZ", encoding="utf-8")
    assert run_cli(["run", "--python", str(fake)]) == ExitCode.BAD_INPUT


def test_interrupted_install_warns_and_starts_anyway(target: Path, tmp_path: Path,
                                                     capfd: pytest.CaptureFixture[str]) -> None:
    from vox1_setup.installer import target_id
    from vox1_setup.journal import Action, Journal
    from vox1_setup.paths import default_paths

    entry = Journal(default_paths()).begin(Action.INSTALL, target_id(str(target)))
    entry.doc["pid"] = 2**22 + 4321  # not running: the install was killed
    entry.save()
    assert run_cli(["run", "--python", str(target)]) == 0
    err = capfd.readouterr().err
    assert entry.id in err and "vox1-setup rollback" in err
    assert (tmp_path / "record.json").exists()


def test_dry_run_json(target: Path, vox1_home: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run_cli(["run", "--python", str(target), "--dry-run", "--json", "--", "--text", "x"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "vox1-run/1"
    assert doc["argv"][1:] == ["-m", "engine", "--settings", str(vox1_home / "config" / "settings.json"),
                               "--text", "x"]
    assert not (tmp_path / "record.json").exists()


def test_only_the_first_double_dash_is_the_separator(target: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["run", "--python", str(target), "--dry-run", "--json", "--", "--input", "-", "--", "x"]) == 0
    assert json.loads(capsys.readouterr().out)["argv"][-4:] == ["--input", "-", "--", "x"]


def test_the_engine_accepts_exactly_what_run_passes(target: Path, tmp_path: Path, vox1_home: Path) -> None:
    """The recorded command line goes through the real engine's own parser and settings loader."""
    from engine.__main__ import _parser
    from engine.settings import load_settings

    settings = tmp_path / "my settings" / "vox1-settings.json"
    settings.parent.mkdir()
    settings.write_text('{"attention_implementation": "sdpa", "batch_size": 3, "model_path": "m", "future_key": 1}',
                        encoding="utf-8")
    code = run_cli(["run", "--python", str(target), "--settings-file", str(settings), "--", "--text", "a -- b",
                    "--json"])
    assert code == 0
    argv = _record(tmp_path)["argv"]
    assert isinstance(argv, list)
    args = _parser().parse_args(argv)
    assert args.settings == settings and args.text == "a -- b" and args.json
    loaded = load_settings(args.settings)
    assert loaded.batch_size == 3 and loaded.extra == {"future_key": 1}


def test_run_resolves_a_vox1_folder_and_warns_for_an_install_made_through_another_spelling(
        target: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """`install --python .../bin/python` then `run --python <folder>`: the same interpreter, so the warning shows."""
    from vox1_setup.installer import target_id
    from vox1_setup.journal import Action, Journal
    from vox1_setup.paths import default_paths

    entry = Journal(default_paths()).begin(Action.INSTALL, target_id(str(target)))
    entry.doc["pid"] = 2**22 + 4322
    entry.save()
    assert run_cli(["run", "--python", str(target.parents[1])]) == 0
    assert entry.id in capfd.readouterr().err
    assert (tmp_path / "record.json").exists()
