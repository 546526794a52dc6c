"""`vox1-setup settings`: where the file lives, validation with clear errors, unknown keys kept, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.settings import load_settings
from vox1_setup.cli import run_cli
from vox1_setup.errors import ExitCode


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = run_cli(["settings", *args, "--json"])
    out = capsys.readouterr().out
    return code, (json.loads(out) if out.strip() else {})


def test_show_defaults_when_there_is_no_file(vox1_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = _json(capsys, "show")
    assert code == 0
    assert doc["schema"] == "vox1-settings-show/1"
    assert doc["exists"] is False
    assert doc["path"] == str(vox1_home / "config" / "settings.json")
    assert doc["settings"]["attention_implementation"] == "auto" and doc["settings"]["batch_size"] == "auto"
    assert not (vox1_home / "config" / "settings.json").exists()  # showing writes nothing


def test_bare_settings_shows_in_text(vox1_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["settings"]) == 0
    out = capsys.readouterr().out
    assert "attention_implementation" in out and "no file yet" in out


@pytest.mark.parametrize(("key", "value", "stored"), [
    ("attention_implementation", "SDPA", "sdpa"),
    ("attention_implementation", "flash_attention_2", "flash_attention_2"),
    ("batch_size", "8", 8),
    ("batch_size", "auto", "auto"),
    ("dtype", "bfloat16", "bfloat16"),
    ("device", "cuda:1", "cuda:1"),
    ("model_path", "C:\\VOX-1\\models\\Qwen3-TTS", "C:\\VOX-1\\models\\Qwen3-TTS"),
])
def test_set_validates_and_writes(key: str, value: str, stored: Any, vox1_home: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = _json(capsys, "set", key, value)
    assert code == 0
    assert doc["settings"][key] == stored
    on_disk = json.loads((vox1_home / "config" / "settings.json").read_text(encoding="utf-8"))
    assert on_disk[key] == stored and on_disk["schema"] == "vox1-settings/1"


@pytest.mark.parametrize(("key", "value", "allowed"), [
    ("attention_implementation", "flash", "auto, flash_attention_2, sdpa, eager"),
    ("batch_size", "0", "integer from 1 to 4096"),
    ("batch_size", "two", "integer from 1 to 4096"),
    ("batch_size", "-3", "integer from 1 to 4096"),  # looks like an option, is a value
    ("batch_size", "99999999999999999999", "integer from 1 to 4096"),
    ("batch_size", "4097", "integer from 1 to 4096"),
    ("dtype", "fp8", "auto, bfloat16, float16, float32"),
    ("device", "gpu", "auto, cpu, cuda or cuda:N"),
])
def test_invalid_values_name_the_key_and_the_allowed_values(key: str, value: str, allowed: str, vox1_home: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = vox1_home / "config" / "settings.json"
    assert run_cli(["settings", "set", "batch_size", "4"]) == 0
    before = path.read_bytes()
    capsys.readouterr()
    assert run_cli(["settings", "set", key, value]) == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert key in err and allowed in err
    assert path.read_bytes() == before  # unchanged


def test_unknown_key_is_refused_with_a_suggestion_unless_allowed(vox1_home: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["settings", "set", "atention", "sdpa"]) == ExitCode.BAD_INPUT
    assert "did you mean 'attention_implementation'" in capsys.readouterr().err
    code, doc = _json(capsys, "set", "ui_theme", '{"dark": true}', "--allow-unknown")
    assert code == 0 and doc["settings"]["ui_theme"] == {"dark": True}
    # an unknown key already in the file can be changed without the flag
    code, doc = _json(capsys, "set", "ui_theme", "light")
    assert code == 0 and doc["settings"]["ui_theme"] == "light"


def test_unknown_keys_in_the_file_survive_a_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "app"
    folder.mkdir()
    path = folder / "s.json"
    path.write_text(json.dumps({"schema": "vox1-settings/1", "future_option": [1, 2], "dtype": "float16"}),
                    encoding="utf-8")
    code, _doc = _json(capsys, "set", "batch_size", "3", "--settings-file", str(path))
    assert code == 0
    on_disk = json.loads(path.read_text(encoding="utf-8"))
    assert on_disk["future_option"] == [1, 2] and on_disk["dtype"] == "float16" and on_disk["batch_size"] == 3
    assert [p.name for p in folder.iterdir()] == ["s.json"]  # no temp file left behind


def test_location_order(tmp_path: Path, vox1_home: Path, monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture[str]) -> None:
    app = tmp_path / "VOX-1 app (x86)"
    app.mkdir()
    _code, doc = _json(capsys, "show", "--app-dir", str(app))
    assert doc["path"] == str(app / "vox1-settings.json")
    monkeypatch.setenv("VOX1_APP_DIR", str(app))
    _code, doc = _json(capsys, "show")
    assert doc["path"] == str(app / "vox1-settings.json")
    env_file = tmp_path / "env-settings.json"
    monkeypatch.setenv("VOX1_SETTINGS", str(env_file))
    _code, doc = _json(capsys, "show")
    assert doc["path"] == str(env_file)
    explicit = tmp_path / "explicit.json"
    _code, doc = _json(capsys, "show", "--settings-file", str(explicit))
    assert doc["path"] == str(explicit)
    # options given to the group apply to the subcommand too
    _code, doc = _json(capsys, "--settings-file", str(explicit), "show")
    assert doc["path"] == str(explicit)


def test_invalid_file_is_reported_and_reset_repairs_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"batch_size": -1, "keep": 1', encoding="utf-8")
    assert run_cli(["settings", "show", "--settings-file", str(path)]) == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert "not valid JSON" in err and "settings reset" in err
    path.write_text('{"batch_size": -1, "keep": 1}', encoding="utf-8")
    assert run_cli(["settings", "show", "--settings-file", str(path)]) == ExitCode.BAD_INPUT
    assert "batch_size" in capsys.readouterr().err
    assert run_cli(["settings", "reset", "--settings-file", str(path)]) == 0
    assert load_settings(path).batch_size == "auto"


def test_reset_keeps_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"batch_size": 4, "keep": 1}', encoding="utf-8")
    assert run_cli(["settings", "reset", "--settings-file", str(path)]) == 0
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["batch_size"] == "auto" and doc["keep"] == 1


def test_unwritable_location_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    assert run_cli(["settings", "set", "batch_size", "2", "--settings-file", str(blocker / "s.json")]) \
        == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert "cannot" in err and str(blocker / "s.json") in err


def test_bom_written_by_notepad_is_accepted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.json"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"attention_implementation": "eager"}')
    code, doc = _json(capsys, "show", "--settings-file", str(path))
    assert code == 0 and doc["settings"]["attention_implementation"] == "eager"


def test_set_repairs_the_invalid_value_the_error_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"schema": "vox1-settings/1", "attention_implementation": "flash", "future": 1}',
                    encoding="utf-8")
    assert run_cli(["settings", "show", "--settings-file", str(path)]) == ExitCode.BAD_INPUT
    assert "settings set KEY VALUE" in capsys.readouterr().err
    assert run_cli(["settings", "set", "attention_implementation", "sdpa", "--settings-file", str(path)]) == 0
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["attention_implementation"] == "sdpa" and doc["future"] == 1


def test_set_still_refuses_when_another_key_is_invalid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"attention_implementation": "flash", "dtype": "int8"}', encoding="utf-8")
    before = path.read_bytes()
    assert run_cli(["settings", "set", "attention_implementation", "sdpa", "--settings-file", str(path)]) \
        == ExitCode.BAD_INPUT
    assert "dtype" in capsys.readouterr().err
    assert path.read_bytes() == before


def test_reset_keeps_unknown_keys_of_a_file_with_an_invalid_value(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"attention_implementation": "flash", "future": {"a": 1}}', encoding="utf-8")
    assert run_cli(["settings", "reset", "--settings-file", str(path)]) == 0
    loaded = load_settings(path)
    assert loaded.extra == {"future": {"a": 1}} and loaded.attention_implementation.value == "auto"


def test_clearing_model_path_says_run_needs_it(vox1_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["settings", "set", "model_path", "/models/vox"]) == 0
    capsys.readouterr()
    assert run_cli(["settings", "set", "model_path", ""]) == 0
    out = capsys.readouterr().out
    assert "model_path cleared" in out and "run` needs it" in out and "None" not in out
    assert run_cli(["settings", "show"]) == 0
    shown = capsys.readouterr().out
    assert "VOX-1's default" not in shown and "run` needs it" in shown
