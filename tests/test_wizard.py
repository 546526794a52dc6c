"""The first-run wizard, driven with typed answers (CliRunner input) against real venvs."""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from click.testing import CliRunner

from tests.support.install_fixtures import flash_version, write_env, write_manifest
from tests.support.recording_engine import make_engine_python, recorded
from tests.support.venvs import make_venv
from tests.support.wheels import build_wheel
from tests.test_doctor import machine
from vox1_setup.cli import run_cli
from vox1_setup.doctor import WheelPick
from vox1_setup.environment import Environment
from vox1_setup.errors import ExitCode
from vox1_setup.wizard import fa2_outlook, machine_summary, plan_wizard


def drive(args: list[str], answers: str = "", **env: str) -> tuple[int, str, str]:
    """Run the CLI with `answers` on stdin (not a terminal) and return (exit code, stdout, stderr)."""
    runner = CliRunner()
    with runner.isolation(input=answers, env=env or None) as (out, err, _mixed):
        code = run_cli(args)
    return code, out.getvalue().decode(), err.getvalue().decode()


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m engine` looks in the current folder first: stay out of the checkout."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    """A Python without torch: FlashAttention 2 cannot work there, detection is fast."""
    return make_venv(tmp_path / "bare venv", pip=False)


def _settings(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def test_interactive_defaults_on_a_machine_without_fa2(bare: Path, vox1_home: Path) -> None:
    code, out, _err = drive(["wizard", "--python", str(bare), "--interactive"], "\n\n")
    assert code == 0
    assert "Your machine" in out and "torch:      not installed" in out
    assert "cannot work on this machine" in out
    assert "Install" not in out.split("FlashAttention 2 here")[1].split("Settings")[0]  # no install offered
    assert "Attention implementation (auto, sdpa, eager) [sdpa]:" in out
    doc = _settings(vox1_home / "config" / "settings.json")
    assert doc["attention_implementation"] == "sdpa" and doc["batch_size"] == "auto"  # the engine's CPU default
    assert "VOX-1 uses its CPU default" in out
    assert doc["schema"] == "vox1-settings/1"


def test_answers_are_validated_and_asked_again(bare: Path, tmp_path: Path) -> None:
    settings = tmp_path / "app" / "vox1-settings.json"
    code, out, _err = drive(["wizard", "--python", str(bare), "--interactive", "--app-dir", str(tmp_path / "app")],
                            "flash\neager\nzero\n0\n3\n")
    assert code == 0
    assert "is not one of" in out or "invalid choice" in out.lower()
    assert "use an integer from 1 to 4096" in out
    doc = _settings(settings)
    assert doc["attention_implementation"] == "eager" and doc["batch_size"] == 3


def test_ctrl_c_or_end_of_input_leaves_the_settings_untouched(bare: Path, tmp_path: Path) -> None:
    settings = tmp_path / "s.json"
    settings.write_text('{"batch_size": 7, "custom": "kept"}', encoding="utf-8")
    before = settings.read_bytes()
    code, _out, err = drive(["wizard", "--python", str(bare), "--interactive", "--settings-file", str(settings)],
                            "auto\n")  # input ends at the batch-size question, as Ctrl-D/Ctrl-C would
    assert code == ExitCode.ABORTED
    assert "aborted" in err
    assert settings.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".settings-")] == []


def test_existing_settings_keep_their_other_values(bare: Path, tmp_path: Path) -> None:
    settings = tmp_path / "s.json"
    settings.write_text('{"dtype": "float16", "model_path": "/m", "custom": [1]}', encoding="utf-8")
    code, _out, _err = drive(["wizard", "--python", str(bare), "--yes", "--settings-file", str(settings)])
    assert code == 0
    doc = _settings(settings)
    assert doc["dtype"] == "float16" and doc["model_path"] == "/m" and doc["custom"] == [1]
    assert doc["attention_implementation"] == "sdpa"


def test_yes_never_asks(bare: Path, vox1_home: Path) -> None:
    code, out, _err = drive(["wizard", "--python", str(bare), "--yes"], "eager\n")
    assert code == 0
    assert "sdpa (recommended)" in out
    assert _settings(vox1_home / "config" / "settings.json")["attention_implementation"] == "sdpa"


def test_without_a_terminal_it_behaves_as_yes(bare: Path, vox1_home: Path) -> None:
    code, out, _err = drive(["wizard", "--python", str(bare)], "eager\n")  # stdin is not a terminal
    assert code == 0
    assert "No terminal" in out
    assert _settings(vox1_home / "config" / "settings.json")["attention_implementation"] == "sdpa"


def test_json_report(bare: Path) -> None:
    code, out, _err = drive(["wizard", "--python", str(bare), "--json"])
    assert code == 0
    doc = json.loads(out)
    assert doc["schema"] == "vox1-wizard/1"
    assert doc["fa2_possible"] is False and doc["blockers"]
    assert doc["settings"]["attention_implementation"] == "sdpa" and doc["started"] is False


def test_offers_to_start_vox1_and_hands_over(tmp_path: Path) -> None:
    py = make_engine_python(tmp_path / "target")
    record = tmp_path / "record.json"
    settings = tmp_path / "s.json"
    code, out, _err = drive(["wizard", "--python", str(py), "--interactive", "--settings-file", str(settings)],
                            "\n\ny\n", ENGINE_RECORD=str(record), ENGINE_EXIT="3")
    assert "Start VOX-1 now?" in out
    assert recorded(record)["argv"] == ["--settings", str(settings)]
    assert code == 3  # the engine's exit code


# --- installing: a GPU machine description over a real venv, a fixture wheel from a file:// URL --------------


@pytest.fixture
def gpu_world(tmp_path: Path) -> dict[str, Path]:
    py = make_venv(tmp_path / "vox venv", pip=True, real_torch=True)
    wheel = build_wheel(tmp_path / "wheels")
    return {
        "python": py,
        "env": write_env(tmp_path / "env.json"),
        "manifest": write_manifest(tmp_path / "wheels.json", [(wheel, wheel.as_uri(), True)]),
        "missing": write_manifest(tmp_path / "missing.json",
                                  [(wheel, (tmp_path / "nowhere" / wheel.name).as_uri(), True)]),
        "settings": tmp_path / "s.json",
    }


@pytest.mark.slow
def test_installs_the_wheel_verifies_it_and_offers_fa2(gpu_world: dict[str, Path]) -> None:
    w = gpu_world
    args = ["wizard", "--python", str(w["python"]), "--env", str(w["env"]), "--manifest", str(w["manifest"]),
            "--settings-file", str(w["settings"]), "--interactive"]
    code, out, err = drive(args, "y\nflash_attention_2\n4\n", VOX1_VERIFY_ALLOW_CPU="1")
    assert code == 0, out + err
    assert "Install flash-attn 2.8.3" in out and "installed and verified" in out
    assert "(auto, flash_attention_2, sdpa, eager) [auto]" in out
    assert flash_version(w["python"]) == "2.8.3"
    doc = _settings(w["settings"])
    assert doc["attention_implementation"] == "flash_attention_2" and doc["batch_size"] == 4
    # run again: the right wheel is already there, nothing is offered
    code, out, _err = drive([*args[:-1], "--yes"], VOX1_VERIFY_ALLOW_CPU="1")
    assert code == 0 and "already installed" in out and "Install flash-attn" not in out


@pytest.mark.slow
def test_declining_the_install_changes_nothing_but_the_settings(gpu_world: dict[str, Path]) -> None:
    w = gpu_world
    code, out, _err = drive(["wizard", "--python", str(w["python"]), "--env", str(w["env"]), "--manifest",
                             str(w["manifest"]), "--settings-file", str(w["settings"]), "--interactive"], "n\n\n\n")
    assert code == 0 and "Not installed" in out
    assert flash_version(w["python"]) is None
    assert "flash_attention_2" not in out.split("Settings")[1]  # not offered: FA2 is not installed
    assert _settings(w["settings"])["attention_implementation"] == "auto"


@pytest.mark.slow
def test_a_failed_install_is_reported_and_the_setup_still_finishes(gpu_world: dict[str, Path]) -> None:
    w = gpu_world
    code, out, _err = drive(["wizard", "--python", str(w["python"]), "--env", str(w["env"]), "--manifest",
                             str(w["missing"]), "--settings-file", str(w["settings"]), "--json"])
    doc = json.loads(out)
    assert doc["install_error"] is not None and code == doc["install_error"]["exit_code"] != 0
    assert flash_version(w["python"]) is None
    assert doc["settings"]["attention_implementation"] == "auto"
    assert _settings(w["settings"])["attention_implementation"] == "auto"


@pytest.mark.slow
def test_a_broken_install_of_the_right_version_is_repaired(gpu_world: dict[str, Path], tmp_path: Path) -> None:
    from tests.support.install_fixtures import pip_install

    w = gpu_world
    pip_install(w["python"], build_wheel(tmp_path / "broken", kind="undefined-symbol"))
    code, out, err = drive(["wizard", "--python", str(w["python"]), "--env", str(w["env"]), "--manifest",
                            str(w["manifest"]), "--settings-file", str(w["settings"]), "--yes"],
                           VOX1_VERIFY_ALLOW_CPU="1")
    assert code == 0, out + err
    assert "installed but does not import" in out and "another torch version" in out
    assert "Repair flash-attn 2.8.3" in out and "installed and verified" in out
    from vox1_setup.target import import_flash_attn

    assert import_flash_attn(str(w["python"])).ok


# --- the pure decisions ---------------------------------------------------------------------------------------


class Case(NamedTuple):
    env: dict[str, Any]
    wheel: bool
    import_error: str | None
    offer: bool
    attention: str
    batch: int | str
    words: str


PICK = WheelPick("2.8.3", "flash_attn-2.8.3+cu12torch2.8cxx11abiTRUE-cp311-cp311-linux_x86_64.whl", 250 << 20)
CPU = {"torch": "2.8.0+cpu", "cuda": None, "cc": None, "driver": None}


@pytest.mark.parametrize("case", [
    Case({}, True, None, True, "auto", "auto", "optional"),
    Case({"cc": "7.5"}, False, None, False, "sdpa", "auto", "cannot work"),
    Case({"cc": "7.5", "flash": "2.8.3"}, False, None, False, "sdpa", "auto", "vox1-setup uninstall"),
    Case(CPU, False, None, False, "sdpa", "auto", "CPU-only"),
    Case({"flash": "2.8.3"}, True, None, False, "auto", "auto", "already installed"),
    Case({"flash": "2.8.3+cu128torch2.8"}, True, None, False, "auto", "auto", "already installed"),
    Case({"flash": "2.8.3"}, True, "built for another torch", True, "auto", "auto", "does not import"),
    Case({"flash": "2.7.4.post1"}, True, None, True, "auto", "auto", "optional"),
    Case({}, False, None, False, "auto", "auto", "No prebuilt FlashAttention 2 wheel fits"),
])
def test_plan_and_outlook(case: Case) -> None:
    plan = plan_wizard(machine(**case.env), PICK if case.wheel else None, ("no wheel for torch 2.99",),
                       case.import_error)
    assert plan.offer_install is case.offer
    assert plan.attention.value == case.attention and plan.batch_size == case.batch
    assert case.words in " ".join(fa2_outlook(plan))


def test_machine_summary_in_plain_words() -> None:
    text = "\n".join(machine_summary(machine(flash="2.8.3")))
    assert "NVIDIA GeForce RTX 4090 (8.9, Ada), 24 GB (21.5 GB free)" in text
    assert "torch:      2.8.0+cu128 (NVIDIA CUDA 12.8)" in text and "flash-attn: 2.8.3" in text


# --- every branch driven through the CLI: machines described by a vox1-env/1 file over a real venv -----------


def _this_python(env: Environment, version: str | None = None) -> Environment:
    """The described machine runs the Python of the target venv (the wizard refuses a file of another one)."""
    return replace(env, python=replace(env.python, version=version or platform.python_version()))


def _env_file(path: Path, **machine_kw: Any) -> Path:
    from vox1_setup.environment import environment_to_dict

    path.write_text(json.dumps(environment_to_dict(_this_python(machine(**machine_kw)))), encoding="utf-8")
    return path


ROCM = {"torch": "2.8.0+rocm6.4", "cuda": None, "hip": "6.4", "cc": None, "driver": None, "arch_list": ()}


@pytest.mark.parametrize(("machine_kw", "reason"), [
    ({"cc": "7.5", "gpu_name": "NVIDIA GeForce RTX 2080 Ti"}, "older than Ampere"),
    ({**CPU, "cuda_available": False, "arch_list": ()}, "CPU-only build"),
    ({"torch": "2.8.0+cpu", "cuda": None, "cuda_available": False, "arch_list": ()}, "CPU-only build"),
    (ROCM, "AMD ROCm"),
], ids=["turing", "no-gpu", "cpu-torch-on-a-gpu-machine", "amd-rocm"])
def test_where_fa2_cannot_work_it_says_why_installs_nothing_and_sets_sdpa(
        machine_kw: dict[str, Any], reason: str, bare: Path, tmp_path: Path) -> None:
    settings = tmp_path / "s.json"
    env = _env_file(tmp_path / "env.json", **machine_kw)
    manifest = write_manifest(tmp_path / "wheels.json", [(build_wheel(tmp_path / "wheels"), "file:///x.whl", False)])
    code, out, err = drive(["wizard", "--python", str(bare), "--env", str(env), "--manifest", str(manifest),
                            "--settings-file", str(settings), "--interactive"], "\n\n")
    assert code == 0, out + err
    assert "cannot work on this machine" in out and reason in out
    assert "Install flash-attn" not in out and "3. Install" not in out
    assert "Attention implementation (auto, sdpa, eager) [sdpa]:" in out  # flash_attention_2 is not even offered
    assert _settings(settings)["attention_implementation"] == "sdpa"


@pytest.mark.parametrize("interrupted_at", [0, 1, 2], ids=["install-question", "attention", "batch-size"])
def test_ctrl_c_at_any_question_leaves_nothing_written(interrupted_at: int, gpu_world: dict[str, Path],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Questions come before changes: Ctrl-C at any of them installs nothing and writes no settings."""
    import click

    from tests.support.install_fixtures import snapshot

    w = gpu_world
    before = snapshot(w["python"])
    asked: list[str] = []
    real: dict[str, Callable[..., Any]] = {"confirm": click.confirm, "prompt": click.prompt}

    def interrupting(kind: str) -> Any:
        def ask(question: str, *args: Any, **kwargs: Any) -> Any:
            asked.append(question)
            if len(asked) - 1 == interrupted_at:
                raise KeyboardInterrupt
            return real[kind](question, *args, **kwargs)
        return ask

    monkeypatch.setattr(click, "confirm", interrupting("confirm"))
    monkeypatch.setattr(click, "prompt", interrupting("prompt"))
    code, _out, err = drive(["wizard", "--python", str(w["python"]), "--env", str(w["env"]), "--manifest",
                             str(w["manifest"]), "--settings-file", str(w["settings"]), "--interactive"], "y\n\n\n")
    assert code == ExitCode.ABORTED and "aborted" in err
    assert len(asked) == interrupted_at + 1
    assert not w["settings"].exists()
    assert snapshot(w["python"]) == before  # nothing installed


def test_ctrl_c_at_the_start_offer_keeps_the_finished_setup_and_starts_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import click

    py = make_engine_python(tmp_path / "target")

    def confirm(question: str, *args: Any, **kwargs: Any) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(click, "confirm", confirm)
    settings, record = tmp_path / "s.json", tmp_path / "record"
    code, _out, _err = drive(["wizard", "--python", str(py), "--interactive", "--settings-file", str(settings)],
                            "\n\n", ENGINE_RECORD=str(record))
    assert code == ExitCode.ABORTED
    assert _settings(settings)["attention_implementation"] == "sdpa"  # the setup itself was complete
    assert not record.exists()


def test_an_install_chosen_with_flash_attention_2_that_fails_falls_back_to_auto(gpu_world: dict[str, Path]) -> None:
    w = gpu_world
    code, out, _err = drive(["wizard", "--python", str(w["python"]), "--env", str(w["env"]), "--manifest",
                             str(w["missing"]), "--settings-file", str(w["settings"]), "--interactive"],
                            "y\nflash_attention_2\n2\n")
    assert code != 0 and "rolled back" in out
    assert "auto instead of flash_attention_2" in out
    doc = _settings(w["settings"])
    assert doc["attention_implementation"] == "auto" and doc["batch_size"] == 2


THIS = f"{sys.version_info[0]}.{sys.version_info[1]}"
HERE = platform.system().lower()
OTHER_OS = "linux" if HERE == "windows" else "windows"


@pytest.mark.parametrize(("machine_kw", "python", "words"), [
    ({"os_name": OTHER_OS}, None, f"the file describes {OTHER_OS}, the target runs on {HERE}"),
    ({}, "3.8.10", f"the file describes Python 3.8, the target is Python {THIS}"),
], ids=["windows-file-other-target", "other-python"])
def test_env_file_of_another_machine_is_refused(machine_kw: dict[str, Any], python: str | None, words: str,
                                                bare: Path, tmp_path: Path) -> None:
    """The file's facts would be mixed with the target's installed packages: refuse before any question."""
    settings = tmp_path / "s.json"
    from vox1_setup.environment import environment_to_dict

    env_doc = _this_python(machine(**machine_kw), python)

    env = tmp_path / "env.json"
    env.write_text(json.dumps(environment_to_dict(env_doc)), encoding="utf-8")
    code, out, err = drive(["wizard", "--python", str(bare), "--env", str(env), "--settings-file", str(settings),
                            "--yes"])
    assert code == ExitCode.BAD_INPUT, out + err
    assert words in err and "does not describe the target" in err
    assert "already installed" not in out and not settings.exists()
