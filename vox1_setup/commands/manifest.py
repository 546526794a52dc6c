"""`vox1-setup manifest build|update|validate|list`: the wheel manifest (`vox1-wheels/1`)."""

from __future__ import annotations

from pathlib import Path

import click

from vox1_setup.commands._common import app_context, emit_json, info, manifest_option, output_options, warn
from vox1_setup.errors import BadInputError, ExitCode
from vox1_setup.knowledge.abi import version2
from vox1_setup.manifest import Manifest, active_manifest, load_manifest, user_manifest_path, write_manifest
from vox1_setup.manifest.model import WheelEntry, release_from_url

LIST_SCHEMA = "vox1-wheel-list/1"
VALIDATION_SCHEMA = "vox1-manifest-validation/1"
BUILD_SCHEMA = "vox1-manifest-build/1"
UPDATE_SCHEMA = "vox1-manifest-update/1"


@click.group("manifest")
def manifest() -> None:
    """The wheel manifest: build it from the catalog, refresh it from GitHub, validate it, list it.

    Every command that needs wheels reads `--manifest PATH_OR_URL` / VOX1_MANIFEST, else the copy written by
    `manifest update`, else the bundled wheels.json.
    """


def _write(m: Manifest, output: Path) -> None:
    try:
        write_manifest(m, output)
    except OSError as exc:
        raise BadInputError(f"cannot write {output}: {exc.strerror or exc}", "choose a writable --output") from exc


@manifest.command("build")
@click.option("--from-tsv", "tsv", required=True, type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="The wheel catalog (shared/data/flash-attn-wheels.tsv).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("wheels.json"),
              show_default=True, metavar="FILE", help="Where to write the manifest.")
@output_options
def build(tsv: Path, output: Path) -> None:
    """Build a manifest from the catalog TSV: same input, byte-identical output."""
    from vox1_setup.manifest.catalog import build_from_tsv

    app = app_context()
    m = build_from_tsv(tsv)
    _write(m, output)
    derived = sum(1 for e in m.entries if e.derived)
    if app.json:
        emit_json({"schema": BUILD_SCHEMA, "output": str(output), "entries": len(m), "derived": derived,
                   "generated_from": dict(m.generated_from)})
        return
    info(f"wrote {output}: {len(m)} wheels ({derived} from derived rows, used only when nothing listed fits)")


@manifest.command("update")
@manifest_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE",
              help="Where to write (default: the user data dir, which later commands then use).")
@click.option("--repo", "repos", multiple=True, metavar="OWNER/NAME",
              help="Only these GitHub repositories (repeatable; default: every known wheel source).")
@click.option("--api-url", envvar="VOX1_GITHUB_API", default=None, metavar="URL",
              help="GitHub API base URL (default https://api.github.com). Env: VOX1_GITHUB_API.")
@click.option("--dry-run", is_flag=True, default=False, help="Report what would change; write nothing.")
@output_options
def update(*, manifest: str | None, output: Path | None, repos: tuple[str, ...], api_url: str | None,
           dry_run: bool) -> None:
    """Refresh the manifest from the GitHub releases API (online): new wheels and their sha256 digests.

    Set GITHUB_TOKEN to avoid the API's low anonymous rate limit.
    """
    from vox1_setup.manifest.github import GITHUB_API, KNOWN_REPOS, fetch_releases, update_from_releases

    app = app_context()
    base = active_manifest(manifest, app.paths)
    targets = repos or KNOWN_REPOS
    for repo in targets:
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise BadInputError(f"--repo {repo!r}: expected OWNER/NAME", "e.g. --repo Dao-AILab/flash-attention")
    releases = {}
    for repo in targets:
        info(f"fetching releases of {repo} …")
        releases[repo] = fetch_releases(repo, api_url=api_url or GITHUB_API)
    result = update_from_releases(base, releases)
    dest = output or user_manifest_path(app.paths)
    if not dry_run:
        _write(result.manifest, dest)
    for conflict in result.conflicts:
        warn(f"checksum conflict (pin kept): {conflict}")
    if app.json:
        emit_json({"schema": UPDATE_SCHEMA, "output": None if dry_run else str(dest), "dry_run": dry_run,
                   "repos": list(targets), **result.summary(), "added_urls": list(result.added)})
        return
    info(f"{len(result.added)} new wheel(s), {result.checksums_added} new checksum(s), {result.promoted} row(s) "
         f"confirmed by a release listing, {result.skipped} asset(s) skipped; {len(result.manifest)} wheels in all")
    if dry_run:
        info("dry run: nothing written")
    else:
        info(f"wrote {dest}")
        if output is None:
            info("resolve/install now use it; delete it to go back to the bundled manifest")


@manifest.command("validate")
@click.argument("path", required=False, metavar="[PATH_OR_URL]")
@manifest_option
@output_options
def validate(path: str | None, manifest: str | None) -> int:
    """Check a manifest: schema, https URLs, parseable file names, fields that agree with them, no duplicates.

    Exit 0 when valid, 2 (BAD_INPUT) with every problem listed otherwise.
    """
    from vox1_setup.manifest.validate import Problem, validate_manifest

    app = app_context()
    origin = path or manifest
    try:
        m = load_manifest(origin) if origin else active_manifest(None, app.paths)
        problems = validate_manifest(m)
        origin = m.origin
    except BadInputError as exc:
        if not origin:
            raise
        problems = [Problem(None, None, "schema", exc.message)]
    if app.json:
        emit_json({"schema": VALIDATION_SCHEMA, "manifest": origin, "valid": not problems,
                   "problems": [p.to_dict() for p in problems]})
        return int(ExitCode.BAD_INPUT if problems else ExitCode.OK)
    for p in problems:
        where = f"entry {p.index} ({p.filename})" if p.index is not None else "document"
        click.echo(f"{where}: [{p.code}] {p.message}")
    if problems:
        raise BadInputError(f"{origin}: {len(problems)} problem(s)", "fix the entries listed above")
    info(f"{origin}: valid ({len(m)} wheels)")
    return int(ExitCode.OK)


def _match_python(e: WheelEntry, value: str) -> bool:
    v = value.lower().strip()
    if v.startswith("cp"):
        return v in (e.abi_tag, f"{e.python_tag}-{e.abi_tag}")
    free = v.endswith("t")
    parts = v.rstrip("t").split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
        raise BadInputError(f"--py {value!r}: expected e.g. 3.11, 3.13t or cp311")
    return e.abi_tag == f"cp{parts[0]}{parts[1]}{'t' if free else ''}"


def _release(e: WheelEntry) -> str | None:
    """The release tag of the URL (`/releases/download/<tag>/`), also for manifests that leave it out."""
    return e.release or release_from_url(e.url)


def _match_platform(e: WheelEntry, value: str) -> bool:
    v = value.lower().strip()
    if v in ("linux", "windows", "darwin", "macos"):
        return e.os == {"macos": "darwin"}.get(v, v)
    if v.startswith("linux_"):  # linux_x86_64 also means the manylinux wheels of that arch
        return e.os == "linux" and any(p.endswith(v.removeprefix("linux")) for p in e.platform_tags)
    return any(p == v or p.endswith("_" + v) for p in e.platform_tags)


def _match_cuda(e: WheelEntry, value: str) -> bool:
    v = version2(value)
    if v is None:
        raise BadInputError(f"--cuda {value!r}: expected e.g. 12 or 12.8")
    if "." not in value:
        return e.cuda_major == v[0]
    # 12.8: wheels labelled 12.8, plus the major-only ones built for every 12.x
    return e.cuda == f"{v[0]}.{v[1]}" or (e.cuda_major_only and e.cuda_major == v[0])


def filter_entries(entries: tuple[WheelEntry, ...], *, torch: str | None = None, python: str | None = None,
                   platform: str | None = None, cuda: str | None = None, source: str | None = None,
                   flash_attn: str | None = None) -> list[WheelEntry]:
    from vox1_setup.resolver import parse_flash_attn_spec

    spec = parse_flash_attn_spec(flash_attn) if flash_attn else None
    torch_v = version2(torch) if torch else None
    if torch and torch_v is None:
        raise BadInputError(f"--torch {torch!r}: expected e.g. 2.7 or 2.7.1+cu128")
    out = []
    for e in entries:
        if torch_v is not None and e.torch_key != torch_v:
            continue
        if python and not _match_python(e, python):
            continue
        if platform and not _match_platform(e, platform):
            continue
        if cuda and not _match_cuda(e, cuda):
            continue
        if source and e.source.lower() != source.lower():
            continue
        if spec is not None and not spec.contains(e.flash_attn_version, prereleases=True):
            continue
        out.append(e)
    return out


@manifest.command("list")
@manifest_option
@click.option("--torch", default=None, metavar="VERSION", help="torch major.minor (2.7) or a full version.")
@click.option("--python-version", "--py", "python", default=None, metavar="VERSION",
              help="Python version: 3.11, 3.13t or cp311.")
@click.option("--python", "python_path", default=None, hidden=True)  # elsewhere an interpreter path: refused
@click.option("--platform", default=None, metavar="TAG",
              help="linux, windows, win_amd64, linux_x86_64 (incl. manylinux), aarch64, or an exact tag.")
@click.option("--cuda", default=None, metavar="VERSION", help="12 (any 12.x) or 12.8 (12.8 and major-only cu12).")
@click.option("--source", default=None, metavar="NAME", help="Dao-AILab, mjun0812, kingbri1, …")
@click.option("--flash-attn", "flash_attn", default=None, metavar="SPEC", help="e.g. '2.8.3', '2.7.*' or '>=2.8'.")
@output_options
def list_(*, manifest: str | None, torch: str | None, python: str | None, python_path: str | None,
          platform: str | None, cuda: str | None, source: str | None, flash_attn: str | None) -> None:
    """List the wheels in the manifest, filtered.

    The release column is the tag the file was published under: mjun0812 re-releases the same file under newer
    tags, so one file can be listed several times.
    """
    if python_path is not None:
        raise BadInputError("manifest list filters by Python version with --py (--python-version); --python "
                            "names an interpreter in the other commands",
                            f"e.g. vox1-setup manifest list --py {python_path}")
    app = app_context()
    m = active_manifest(manifest, app.paths)
    found = filter_entries(m.entries, torch=torch, python=python, platform=platform, cuda=cuda, source=source,
                           flash_attn=flash_attn)
    if app.json:
        emit_json({"schema": LIST_SCHEMA, "manifest": m.origin, "count": len(found),
                   "filters": {"torch": torch, "python": python, "platform": platform, "cuda": cuda,
                               "source": source, "flash_attn": flash_attn},
                   "entries": [{**e.to_dict(), "release": _release(e)} for e in found]})
        return
    for e in found:
        sha = "sha256" if e.sha256 else "-"
        abi = {True: "abi1", False: "abi0", None: "-"}[e.cxx11abi]
        click.echo(f"{e.flash_attn_version:<12} torch {e.torch_mm:<5} cu{e.cuda:<5} {e.abi_tag:<7} {abi:<5} "
                   f"{e.source:<10} {e.evidence:<12} {sha:<7} {_release(e) or '-':<13} {e.filename}")
    info(f"{len(found)} of {len(m)} wheels", err=True)

