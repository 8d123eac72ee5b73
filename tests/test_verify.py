"""verify: intact workspaces pass; every kind of tampering is named precisely."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Cli, sha256sum_check

pytestmark = pytest.mark.slow


def _notebook(ws: Path) -> Path:
    return next((ws / "10_evidence/runs").glob("RUN-*.ipynb"))


def _ledger_lines(ws: Path) -> list[str]:
    return (ws / "10_evidence/ledger.jsonl").read_text().splitlines()


def _write_ledger(ws: Path, lines: list[str]) -> None:
    (ws / "10_evidence/ledger.jsonl").write_text("\n".join(lines) + "\n")


def test_intact_workspace_passes(cli: Cli, sealed: tuple[str, Path]) -> None:
    incident_id, ws = sealed
    result = cli("verify", incident_id)
    assert result.exit_code == 0, result.output
    assert "INTACT" in result.stdout
    assert sha256sum_check(ws).returncode == 0
    report = json.loads(cli("verify", incident_id, "--json").stdout)
    assert report["ok"] is True and report["problems"] == [] and report["files_checked"] >= 4


def _flip_byte(ws: Path) -> None:
    path = _notebook(ws)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _delete(ws: Path) -> None:
    next((ws / "10_evidence/runs").glob("*.prov.json")).unlink()


def _extra(ws: Path) -> None:
    (ws / "10_evidence/logs/planted.log").write_text("not recorded\n")


def _edit_entry(ws: Path) -> None:
    lines = _ledger_lines(ws)
    entry = json.loads(lines[1])
    entry["actor"] = "mallory"
    lines[1] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    _write_ledger(ws, lines)


def _remove_entry(ws: Path) -> None:
    lines = _ledger_lines(ws)
    del lines[1]
    _write_ledger(ws, lines)


def _reorder(ws: Path) -> None:
    lines = _ledger_lines(ws)
    lines[1], lines[2] = lines[2], lines[1]
    _write_ledger(ws, lines)


def _drop_manifest_line(ws: Path) -> None:
    path = ws / "10_evidence/hashes.sha256"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[1:]) + "\n")


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (_flip_byte, "does not match recorded"),
        (_delete, "missing (deleted)"),
        (_extra, "logs/planted.log: in 10_evidence but not recorded"),
        (_edit_entry, "entry edited"),
        (_remove_entry, "chain broken"),
        (_reorder, "reordered"),
        (_drop_manifest_line, "not in hashes.sha256"),
    ],
    ids=[
        "changed-byte",
        "deleted",
        "extra-file",
        "edited-entry",
        "removed-entry",
        "reordered",
        "manifest-line-removed",
    ],
)
def test_tampering_is_detected(
    cli: Cli, sealed: tuple[str, Path], tamper: Callable[[Path], None], expected: str
) -> None:
    incident_id, ws = sealed
    tamper(ws)
    result = cli("verify", incident_id)
    assert result.exit_code == 1
    assert "NOT INTACT" in result.stdout
    assert expected in result.stdout, result.stdout


def test_truncated_ledger_needs_the_expected_head(cli: Cli, sealed: tuple[str, Path]) -> None:
    incident_id, ws = sealed
    earlier = ws.parent / "earlier-copy"
    shutil.copytree(ws, earlier)
    assert cli("incident", "assign", incident_id, "Scribe", "sam").exit_code == 0
    head = json.loads(_ledger_lines(ws)[-1])["hash"]
    # A tail cut alone is named (the records people read and the manifest still hold it) ...
    _write_ledger(ws, _ledger_lines(ws)[:-1])
    assert cli("verify", incident_id).exit_code == 1
    # ... but a whole workspace put back as it was earlier is self-consistent ...
    shutil.rmtree(ws)
    earlier.rename(ws)
    assert cli("verify", incident_id).exit_code == 0
    # ... except against the head the operator pasted into the incident channel.
    result = cli("verify", incident_id, "--expect-head", head)
    assert result.exit_code == 1
    assert "truncated" in result.stdout


def test_expected_head_with_later_entries_passes(cli: Cli, sealed: tuple[str, Path]) -> None:
    incident_id, ws = sealed
    older = json.loads(_ledger_lines(ws)[1])["hash"]
    result = cli("verify", incident_id, "--expect-head", older[:16])
    assert result.exit_code == 0
    assert "appended after the expected head" in result.stdout


def test_sha256sum_catches_a_changed_byte_too(sealed: tuple[str, Path]) -> None:
    _, ws = sealed
    _flip_byte(ws)
    assert sha256sum_check(ws).returncode != 0


# --- issue 11: what verify used to accept ------------------------------------------------


def test_planted_file_with_its_own_manifest_line_fails(cli: Cli, sealed: tuple[str, Path]) -> None:
    """Manifest and ledger agree both ways: a manifest line needs a ledger entry."""
    incident_id, ws = sealed
    planted = ws / "10_evidence/logs/RUN-planted.log"
    planted.write_text("looks like evidence\n")
    digest = hashlib.sha256(planted.read_bytes()).hexdigest()
    with (ws / "10_evidence/hashes.sha256").open("a") as stream:
        stream.write(f"{digest}  logs/RUN-planted.log\n")
    assert sha256sum_check(ws).returncode == 0  # coreutils alone cannot tell
    result = cli("verify", incident_id)
    assert result.exit_code == 1
    assert "logs/RUN-planted.log: in hashes.sha256 but in no ledger entry" in result.stdout


def _rewrite_line(path: Path) -> None:
    text = path.read_text()
    last = text.rstrip("\n").rsplit("\n", 1)[-1]
    path.write_text(text.replace(last, last + " (edited)"))


VIEWS = [
    "00_meta/timeline.md",
    "20_actions/commands.md",
    "20_actions/rollback.md",
    "30_verification/checks.md",
    "30_verification/metrics.md",
]


@pytest.mark.parametrize("how", ["edited", "deleted"])
@pytest.mark.parametrize("view", VIEWS)
def test_records_people_read_are_verified(
    cli: Cli, sealed: tuple[str, Path], view: str, how: str
) -> None:
    incident_id, ws = sealed
    path = ws / view
    if how == "edited":
        _rewrite_line(path)
    else:
        path.unlink()
    result = cli("verify", incident_id)
    assert result.exit_code == 1, result.stdout
    assert f"{view}:" in result.stdout


@pytest.mark.parametrize("kind", ["update", "report"])
def test_published_updates_and_reports_are_verified(
    cli: Cli, sealed: tuple[str, Path], kind: str
) -> None:
    incident_id, ws = sealed
    assert cli(kind, incident_id).exit_code == 0
    [path] = (
        (ws / "00_meta/updates").glob("*.md")
        if kind == "update"
        else (ws / "90_postmortem").glob("report-*.html")
    )
    assert cli("verify", incident_id).exit_code == 0
    path.write_text(path.read_text().replace("Investigating", "Resolved"))
    result = cli("verify", incident_id)
    assert result.exit_code == 1
    assert f"{path.relative_to(ws).as_posix()}: sha256" in result.stdout


def test_symlink_to_an_identical_copy_fails_verify_and_bundle(
    cli: Cli, sealed: tuple[str, Path], tmp_path: Path
) -> None:
    incident_id, ws = sealed
    notebook = _notebook(ws)
    copy = tmp_path / "outside.ipynb"
    copy.write_bytes(notebook.read_bytes())
    notebook.unlink()
    notebook.symlink_to(copy)
    result = cli("verify", incident_id)
    assert result.exit_code == 1
    assert f"runs/{notebook.name}: a symbolic link, not a regular file" in result.stdout
    bundle = cli("bundle", incident_id)
    assert bundle.exit_code != 0 and not list((ws.parent / "bundles").glob("*"))


@pytest.mark.parametrize("name", ["ledger.jsonl", "hashes.sha256"])
def test_fifo_in_place_of_evidence_does_not_hang(
    kfm: Callable[..., subprocess.CompletedProcess[str]], sealed: tuple[str, Path], name: str
) -> None:
    incident_id, ws = sealed
    path = ws / "10_evidence" / name
    path.unlink()
    os.mkfifo(path)
    result = kfm("verify", incident_id, timeout=120)  # the timeout only guards the old hang
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{name}: a FIFO, not a regular file" in result.stdout


def test_a_partial_file_no_run_explains_is_a_problem(cli: Cli, sealed: tuple[str, Path]) -> None:
    incident_id, ws = sealed
    (ws / "10_evidence/runs/.planted.ipynb.x1y2.partial").write_text("{}")
    result = cli("verify", incident_id)
    assert result.exit_code == 1
    assert "runs/.planted.ipynb.x1y2.partial: partial file no recorded run or seal" in result.stdout


def _torn_ledger(ws: Path) -> None:
    path = ws / "10_evidence/ledger.jsonl"
    path.write_bytes(path.read_bytes()[:-20])


def _non_utf8_manifest(ws: Path) -> None:
    path = ws / "10_evidence/hashes.sha256"
    path.write_bytes(path.read_bytes().replace(b".prov.json", b".prov\xff.json", 1))


def _data_not_an_object(ws: Path) -> None:
    from kfm_runbooks import ledger

    ledger.append(
        ws / "10_evidence/ledger.jsonl",
        kind="notes",
        incident=ws.name,
        actor="mallory",
        data=["not", "an", "object"],  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (_torn_ledger, "ledger.jsonl: last line is incomplete (no newline): torn write"),
        (_non_utf8_manifest, "is not UTF-8 (edited or corrupted)"),
        (_data_not_an_object, "data is not an object"),
    ],
    ids=["torn-ledger-line", "non-utf8-manifest", "data-not-an-object"],
)
def test_damaged_records_are_named_failures_and_other_commands_refuse(
    cli: Cli, sealed: tuple[str, Path], damage: Callable[[Path], None], named: str
) -> None:
    incident_id, ws = sealed
    damage(ws)
    result = cli("verify", incident_id)
    assert result.exit_code == 1, result.output
    assert named in result.stdout
    for command in (
        ("incident", "note", incident_id, "--impact", "x"),
        ("incident", "show", incident_id),
        ("update", incident_id),
        ("incident", "resolve", incident_id),
    ):
        refused = cli(*command)
        assert refused.exit_code == 1, (command, refused.output)
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and f"kfm-runbook verify {incident_id}" in lines[0], lines
