"""`manifest update`: new assets and their digests from the GitHub releases API (a loopback stand-in)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.envs import make_env
from tests.support.github_api import FakeGitHub, release
from vox1_setup.cli import run_cli
from vox1_setup.errors import DownloadError, ExitCode
from vox1_setup.manifest import Manifest, default_manifest, dump_manifest, load_manifest, user_manifest_path
from vox1_setup.manifest.github import fetch_releases, update_from_releases
from vox1_setup.manifest.validate import validate_manifest
from vox1_setup.paths import default_paths
from vox1_setup.resolver import resolve

DAO = "Dao-AILab/flash-attention"
MJUN = "mjun0812/flash-attention-prebuild-wheels"
DAO_DL = "https://github.com/Dao-AILab/flash-attention/releases/download"
MJUN_DL = "https://github.com/mjun0812/flash-attention-prebuild-wheels/releases/download"
SHA_A = "a" * 64
SHA_B = "b" * 64
NEW_OFFICIAL = "flash_attn-2.8.3.post2+cu12torch2.9cxx11abiTRUE-cp312-cp312-linux_x86_64.whl"


def _pick(filename: str) -> Manifest:
    return Manifest(entries=(default_manifest().by_filename(filename)[0],))


@pytest.fixture
def base() -> Manifest:
    m = default_manifest()
    names = [
        "flash_attn-2.8.3+cu12torch2.7cxx11abiTRUE-cp311-cp311-linux_x86_64.whl",  # listed, pinned
        "flash_attn-2.8.3.post1+cu12torch2.7cxx11abiFALSE-cp311-cp311-linux_x86_64.whl",  # derived, no sha
    ]
    return Manifest(entries=tuple(m.by_filename(n)[0] for n in names), generated_from={"catalog": "test"})


def _releases(base: Manifest) -> dict[str, list[dict[str, object]]]:
    pinned, derived = base.entries
    return {
        DAO: [
            release("v2.8.3.post2", [
                (NEW_OFFICIAL, f"{DAO_DL}/v2.8.3.post2/{NEW_OFFICIAL}", SHA_A, 250_000_000),
                ("flash_attn-2.8.3.post2.tar.gz", f"{DAO_DL}/v2.8.3.post2/flash_attn-2.8.3.post2.tar.gz", None, 10),
                ("flash_attn_3-3.0.0b1+cu128torch2.8-cp39-abi3-linux_x86_64.whl",
                 f"{DAO_DL}/v2.8.3.post2/flash_attn_3-3.0.0b1+cu128torch2.8-cp39-abi3-linux_x86_64.whl", None, 5),
            ]),
            release("v2.8.3.post1", [(derived.filename, derived.url, SHA_B, 200_000_000)]),
            release("v2.8.3", [(pinned.filename, pinned.url, "c" * 64, 190_000_000)]),
            release("v9.9.9", [("flash_attn-9.9.9+cu12torch2.9cxx11abiTRUE-cp312-cp312-linux_x86_64.whl",
                                f"{DAO_DL}/v9.9.9/flash_attn-9.9.9+cu12torch2.9cxx11abiTRUE-cp312-cp312-"
                                "linux_x86_64.whl", None, 1)], draft=True),
        ],
        MJUN: [
            release(f"v0.9.{i}", [(f"flash_attn-2.8.3+cu130torch2.{10 + i}-cp312-cp312-linux_x86_64.whl",
                                   f"{MJUN_DL}/v0.9.{i}/flash_attn-2.8.3%2Bcu130torch2.{10 + i}-cp312-cp312-"
                                   "linux_x86_64.whl", None, 300_000_000)])
            for i in range(3)
        ],
    }


def test_update_is_pure_and_explains_what_changed(base: Manifest) -> None:
    result = update_from_releases(base, _releases(base))
    pinned, derived = result.manifest.entries[:2]
    assert pinned.sha256 == base.entries[0].sha256  # the pin is kept …
    assert len(result.conflicts) == 1 and pinned.filename in result.conflicts[0]  # … and the conflict reported
    assert derived.sha256 == SHA_B and derived.size == 200_000_000
    assert derived.evidence == "listed" and result.promoted == 1
    assert not any("existence unconfirmed" in n for n in derived.notes)
    added = {e.filename: e for e in result.manifest.entries[2:]}
    assert set(added) == {NEW_OFFICIAL, *(f"flash_attn-2.8.3+cu130torch2.{10 + i}-cp312-cp312-linux_x86_64.whl"
                                         for i in range(3))}
    new = added[NEW_OFFICIAL]
    assert (new.sha256, new.size, new.source, new.evidence) == (SHA_A, 250_000_000, "Dao-AILab", "listed")
    assert new.cxx11abi is True and new.min_glibc == "2.32" and "sm_120" in new.gpu_archs
    assert result.skipped == 1  # flash_attn_3 is not FA2; the sdist is not a wheel at all
    assert validate_manifest(result.manifest) == []
    # Same input, same output: deterministic order.
    assert dump_manifest(update_from_releases(base, _releases(base)).manifest) == dump_manifest(result.manifest)


def test_fetch_follows_pagination_and_sends_the_token(base: Manifest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "t0ken")
    with FakeGitHub(_releases(base), per_page=1) as gh:
        got = fetch_releases(MJUN, api_url=gh.url)
        assert [r["tag_name"] for r in got] == ["v0.9.0", "v0.9.1", "v0.9.2"]
        assert len(gh.requests) == 3
        assert all(h.get("Authorization") == "Bearer t0ken" for _, h in gh.requests)


def test_fetch_errors_carry_hints(base: Manifest) -> None:
    with FakeGitHub(_releases(base)) as gh:
        with pytest.raises(DownloadError, match="HTTP 404") as err:
            fetch_releases("nobody/nothing", api_url=gh.url)
        assert err.value.hint and "owner/name" in err.value.hint
        gh.rate_limit()
        with pytest.raises(DownloadError, match="rate limit") as err:
            fetch_releases(DAO, api_url=gh.url)
        assert err.value.hint and "GITHUB_TOKEN" in err.value.hint


def test_update_command_writes_a_valid_manifest_that_resolve_uses(base: Manifest, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "base.json"
    src.write_bytes(dump_manifest(base))
    out = tmp_path / "updated.json"
    with FakeGitHub(_releases(base), per_page=2) as gh:
        code = run_cli(["manifest", "update", "--manifest", str(src), "--api-url", gh.url, "--repo", DAO,
                        "--repo", MJUN, "-o", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == ExitCode.OK, captured.err
    report = json.loads(captured.out)
    assert report["schema"] == "vox1-manifest-update/1"
    assert report["added"] == 4 and report["checksums_added"] == 1 and report["promoted"] == 1
    assert "checksum conflict" in captured.err
    updated = load_manifest(out)
    assert validate_manifest(updated) == []
    env = make_env(python="3.12.4", torch="2.9.0+cu128", driver="575.51.03")
    r = resolve(env, updated)
    assert r.selected is not None and r.selected.filename == NEW_OFFICIAL


def test_update_defaults_to_the_user_copy_and_dry_run_writes_nothing(base: Manifest, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "base.json"
    src.write_bytes(dump_manifest(base))
    target = user_manifest_path(default_paths())
    with FakeGitHub(_releases(base)) as gh:
        assert run_cli(["manifest", "update", "--manifest", str(src), "--api-url", gh.url, "--repo", DAO,
                        "--dry-run"]) == ExitCode.OK
        assert not target.exists()
        assert run_cli(["manifest", "update", "--manifest", str(src), "--api-url", gh.url, "--repo", DAO]) == 0
    assert target.is_file()
    assert "resolve/install now use it" in capsys.readouterr().out
    assert any(e.filename == NEW_OFFICIAL for e in load_manifest(target).entries)


def test_update_failure_changes_nothing(base: Manifest, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "base.json"
    src.write_bytes(dump_manifest(base))
    out = tmp_path / "out.json"
    with FakeGitHub(_releases(base)) as gh:
        gh.rate_limit()
        code = run_cli(["manifest", "update", "--manifest", str(src), "--api-url", gh.url, "-o", str(out)])
    assert code == ExitCode.DOWNLOAD_FAILED
    assert not out.exists()
    err = capsys.readouterr().err
    assert "rate limit" in err and "GITHUB_TOKEN" in err
    assert run_cli(["manifest", "update", "--repo", "not-a-repo", "-o", str(out)]) == ExitCode.BAD_INPUT
