"""verify: intact workspaces pass; every kind of tampering is named precisely."""

from __future__ import annotations

import json
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
    head = json.loads(_ledger_lines(ws)[-1])["hash"]
    _write_ledger(ws, _ledger_lines(ws)[:-1])
    # The tail cut is invisible from the file alone (the chain that is left is valid) ...
    assert cli("verify", incident_id).exit_code == 0
    # ... but not against the head the operator pasted into the incident channel.
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
