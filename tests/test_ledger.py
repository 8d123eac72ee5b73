"""The hash chain: appends link, and every kind of edit is named."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from kfm_runbooks import ledger


def _chain(tmp_path: Path, n: int = 4) -> Path:
    path = tmp_path / "ledger.jsonl"
    for i in range(n):
        ledger.append(path, kind="test", incident="INC-20260101-001", actor="t", data={"i": i})
    return path


def test_entries_link_to_their_predecessor(tmp_path: Path) -> None:
    path = _chain(tmp_path)
    report = ledger.check(path)
    assert report.problems == []
    entries = report.entries
    assert entries[0]["prev"] == ledger.GENESIS
    for before, after in itertools.pairwise(entries):
        assert after["prev"] == before["hash"]
    assert ledger.head(path) == entries[-1]
    assert entries[-1]["time"].endswith("Z")


def test_edited_entry_is_named(tmp_path: Path) -> None:
    path = _chain(tmp_path)
    lines = path.read_text().splitlines()
    entry = json.loads(lines[2])
    entry["data"]["i"] = 99
    lines[2] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    path.write_text("\n".join(lines) + "\n")
    problems = ledger.check(path).problems
    assert any("line 3" in p and "edited" in p for p in problems)


def test_reordered_and_removed_entries_break_the_chain(tmp_path: Path) -> None:
    path = _chain(tmp_path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[2], lines[1], lines[3]]) + "\n")
    assert any("reordered" in p for p in ledger.check(path).problems)
    path.write_text("\n".join([lines[0], lines[1], lines[3]]) + "\n")
    assert any("chain broken" in p for p in ledger.check(path).problems)


def test_torn_last_line_is_reported(tmp_path: Path) -> None:
    path = _chain(tmp_path)
    path.write_bytes(path.read_bytes()[:-10])
    problems = ledger.check(path).problems
    assert any("torn" in p for p in problems)


def test_ledger_line_format_is_pinned_and_is_not_rfc8785() -> None:
    """Existing hash chains were computed over this form: it must never follow JCS."""
    value = {"b": 1.0, "a": "é", "\ufb33": 1, "\U0001f600": 2}
    expected = '{"a":"é","b":1.0,"\ufb33":1,"\U0001f600":2}'
    assert ledger.entry_bytes(value) == expected.encode()
