"""Unauthorized-access checks: log parsing, detection thresholds, the reversible block list."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kfm_runbooks.checks.security import access
from kfm_runbooks.sandbox import create_sandbox
from kfm_runbooks.target import load_target

POLICY = {
    "restricted": {"/data/restricted": ["steward"]},
    "users": {"alice": "steward", "bob": "analyst"},
    "thresholds": {"denied_burst": 4, "window_seconds": 30, "token_max_ips": 1},
}


def _line(second: int, **fields: object) -> str:
    record = {
        "time": f"2026-06-01T10:{second // 60:02d}:{second % 60:02d}Z",
        "user": "bob",
        "role": "analyst",
        "ip": "198.51.100.7",
        "path": "/data/open",
        "status": 200,
    }
    record.update(fields)
    return json.dumps(record)


def _config(tmp_path: Path, lines: list[str], policy: object = POLICY) -> access.AccessConfig:
    (tmp_path / "api.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
    return access.AccessConfig(
        tmp_path, (tmp_path / "api.jsonl",), tmp_path / "policy.yaml", tmp_path / "block.yaml"
    )


def test_sandbox_offenders(tmp_path: Path) -> None:
    config = access.AccessConfig.from_target(load_target(create_sandbox(tmp_path / "sbx")))
    scan = access.scan(config)
    assert {(o.kind, o.value): sorted(o.codes) for o in scan.offenders} == {
        ("user", "mallory"): ["SEC_ACCESS_DENIED_BURST", "SEC_ACCESS_RESTRICTED_GRANTED"],
        ("token", "tok-mallory-7"): ["SEC_ACCESS_TOKEN_MULTI_IP"],
    }
    assert scan.lines == len(scan.events) == 52  # JSON lines and combined-format lines
    gateway = [e for e in scan.events if e.source.startswith("security/access/logs/gateway.log")]
    assert len(gateway) == 10 and {e.role for e in gateway} == {"steward", "analyst"}
    assert all("?" not in e.path for e in scan.events)  # query strings dropped
    clean = access.AccessConfig.from_target(
        load_target(create_sandbox(tmp_path / "clean", clean=True))
    )
    assert access.scan(clean).offenders == []  # one denied request is not a burst


def test_burst_needs_the_count_within_the_window(tmp_path: Path) -> None:
    spaced = [_line(20 * i, status=403) for i in range(6)]  # 6 denials, never 4 within 30 s
    assert access.scan(_config(tmp_path, spaced)).offenders == []
    tight = [
        _line(100 + 5 * i, status=401, user="-", role=None, ip="203.0.113.9") for i in range(4)
    ]
    scan = access.scan(_config(tmp_path, spaced + tight))
    assert [(o.kind, o.value) for o in scan.offenders] == [("ip", "203.0.113.9")]  # anonymous


def test_restricted_prefix_is_segment_bounded(tmp_path: Path) -> None:
    lines = [
        _line(1, path="/data/restricted-public/x"),  # not under /data/restricted
        _line(2, path="/data/restricted/x?page=2", user="alice", role="steward"),
        _line(3, path="/data/restricted/y", status=404),
        _line(4, path="/data/restricted"),
    ]
    scan = access.scan(_config(tmp_path, lines))
    [finding] = scan.findings
    assert finding.code == "SEC_ACCESS_RESTRICTED_GRANTED" and finding.subject == "user:bob"
    assert "1 restricted response" in finding.message


def test_raw_tokens_are_reduced_to_fingerprints(tmp_path: Path) -> None:
    raw = "eyJ" + "NotARealToken" * 3
    lines = [_line(i, token=raw, ip=f"192.0.2.{i + 1}") for i in range(3)]
    scan = access.scan(_config(tmp_path, lines))
    [offender] = scan.offenders
    assert offender.kind == "token" and offender.value.startswith("fp:")
    assert raw not in repr(scan.findings) and raw not in repr(scan.events)


def test_unreadable_lines_and_policy_are_held_not_guessed(tmp_path: Path) -> None:
    lines = [_line(1), "not a log line", "[1, 2]", _line(2, time="yesterday"), '{"broken": ']
    scan = access.scan(_config(tmp_path, lines))
    [held] = scan.findings
    assert held.code == "SEC_ACCESS_LOG_UNPARSED" and held.severity == "hold"
    assert held.message.startswith("4 line(s)") and len(scan.events) == 1
    bad_policy = access.scan(_config(tmp_path, [_line(1)], policy=["not", "a", "map"]))
    assert [f.code for f in bad_policy.findings] == ["SEC_ACCESS_POLICY_INVALID"]


def test_block_list_is_idempotent_reversible_and_keeps_other_entries(tmp_path: Path) -> None:
    config = access.AccessConfig.from_target(load_target(create_sandbox(tmp_path / "sbx")))
    before = config.blocklist.read_bytes()
    first = access.block(config, "user", "mallory", reason="x", incident="INC-20260601-001")
    assert (
        first["added"]
        and not access.block(config, "user", "mallory", reason="x", incident="I")["added"]
    )
    assert access.blocked(config) == {("ip", "192.0.2.250"), ("user", "mallory")}
    assert access.unblock(config, "user", "mallory")["removed"]
    assert not access.unblock(config, "user", "mallory")["removed"]
    assert config.blocklist.read_bytes() == before
    with pytest.raises(ValueError, match="block kind"):
        access.block(config, "group", "x", reason="", incident="I")


def test_per_minute_counts(tmp_path: Path) -> None:
    lines = [_line(5), _line(70, status=403), _line(75, status=403), _line(190)]
    scan = access.scan(_config(tmp_path, lines))
    assert access.per_minute(scan.events) == [
        ("10:00", 1, 0),
        ("10:01", 0, 2),
        ("10:02", 0, 0),
        ("10:03", 1, 0),
    ]
