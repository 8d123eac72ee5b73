"""Watcher gate packets: the watcher's routing decision must follow its gate profile.

Follows KFM's `validate_watcher_gate_packet` contract and finding codes: the packet's
structure (checked natively, like KFM's closed packet schema; governance flags must all be
false: GOVERNANCE_VIOLATION), its content-bound `spec_hash`, its binding to the profile,
and its decision / exit code / reason codes / obligations recomputed from the profile's
thresholds (DECISION_MISMATCH, EXIT_CODE_MISMATCH, REASON_CODES_NOT_CANONICAL, ...). The
profile itself is proven by recomputing its pinned `spec_hash`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .. import HOLD
from ..common.jcs import spec_hash_matches
from .base import READ_CODES, SHA256_RE, FileReport, parse_instant, read_json, rel

GATE_CODES = frozenset(
    {
        "PACKET_SCHEMA_INVALID",
        "GOVERNANCE_VIOLATION",
        "DIGEST_PLACEHOLDER",
        "SPEC_HASH_MISMATCH",
        "PROFILE_BINDING_MISMATCH",
        "DECISION_MISMATCH",
        "EXIT_CODE_MISMATCH",
        "REASON_CODES_NOT_CANONICAL",
        "REASON_CODES_MISMATCH",
        "OBLIGATIONS_NOT_CANONICAL",
        "OBLIGATIONS_MISMATCH",
        "PROFILE_INVALID",
        "PROFILE_HASH_MISMATCH",
    }
)
ZERO_SHA256 = "sha256:" + "0" * 64


# --- gate packets ----------------------------------------------------------------------

_REF_RE = re.compile(r"(?:kfm|fixture)://\S+")
_GOVERNANCE = ("source_activated", "policy_evaluated", "promotion_authorized", "public_use_allowed")
_PACKET_KEYS = frozenset(
    {
        "object_type",
        "schema_version",
        "packet_id",
        "watcher_id",
        "spec_hash",
        "profile",
        "prefilter",
        "artifacts",
        "score",
        "decision",
        "process_exit_code",
        "reason_codes",
        "obligations",
        "assessed_at",
        "governance",
    }
)
_REASONS = frozenset(
    {
        "ALL_GATES_GREEN",
        "ASSET_MISSING",
        "MEDIAN_CLOUD_TOO_HIGH",
        "MISSING_ETAG",
        "NO_ITEMS",
        "SCORE_AMBER",
        "SCORE_BELOW_DENY",
    }
)
_OBLIGATIONS = frozenset({"BLOCK_PROMOTION", "ROUTE_STEWARD_REVIEW"})


def _int(value: Any, low: int, high: int | None = None) -> bool:
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and value >= low
        and (high is None or value <= high)
    )


def _enum_list(value: Any, allowed: frozenset[str], min_items: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) >= min_items
        and len(value) == len({str(v) for v in value})
        and all(isinstance(v, str) and v in allowed for v in value)
    )


def packet_shape(packet: dict[str, Any]) -> list[tuple[str, str]]:
    """The packet contract's structure, checked natively: (code, pointer) per violation."""
    bad: list[tuple[str, str]] = []

    def need(ok: bool, where: str, code: str = "PACKET_SCHEMA_INVALID") -> None:
        if not ok:
            bad.append((code, where))

    need(set(packet) == _PACKET_KEYS, "/")
    need(packet.get("object_type") == "WatcherGatePacket", "/object_type")
    need(packet.get("schema_version") == "1.0.0", "/schema_version")
    need(
        isinstance(packet.get("spec_hash"), str) and bool(SHA256_RE.fullmatch(packet["spec_hash"])),
        "/spec_hash",
    )
    profile = packet.get("profile")
    need(
        isinstance(profile, dict)
        and set(profile) == {"profile_id", "profile_version", "spec_hash"}
        and all(isinstance(v, str) for v in profile.values()),
        "/profile",
    )
    pre = packet.get("prefilter")
    cloud = pre.get("median_cloud_percent") if isinstance(pre, dict) else None
    need(
        isinstance(pre, dict)
        and set(pre)
        == {"items_found", "asset_missing_count", "missing_etag", "median_cloud_percent"}
        and _int(pre.get("items_found"), 0)
        and _int(pre.get("asset_missing_count"), 0)
        and isinstance(pre.get("missing_etag"), bool)
        and (
            cloud is None
            or (
                isinstance(cloud, int | float) and not isinstance(cloud, bool) and 0 <= cloud <= 100
            )
        ),
        "/prefilter",
    )
    artifacts = packet.get("artifacts")
    need(
        isinstance(artifacts, dict)
        and len(artifacts) == 5
        and all(isinstance(v, str) and _REF_RE.fullmatch(v) for v in artifacts.values()),
        "/artifacts",
    )
    need(_int(packet.get("score"), 0, 100), "/score")
    need(packet.get("decision") in ("GREEN", "AMBER", "DENY"), "/decision")
    need(
        packet.get("process_exit_code") in (0, 2)
        and not isinstance(packet.get("process_exit_code"), bool),
        "/process_exit_code",
    )
    need(_enum_list(packet.get("reason_codes"), _REASONS, 1), "/reason_codes")
    need(_enum_list(packet.get("obligations"), _OBLIGATIONS, 0), "/obligations")
    need(parse_instant(packet.get("assessed_at")) is not None, "/assessed_at")
    governance = packet.get("governance")
    if not isinstance(governance, dict) or set(governance) != {*_GOVERNANCE, "release_ref"}:
        bad.append(("GOVERNANCE_VIOLATION", "/governance"))
    else:
        for flag in _GOVERNANCE:
            need(governance[flag] is False, f"/governance/{flag}", "GOVERNANCE_VIOLATION")
        need(governance["release_ref"] is None, "/governance/release_ref", "GOVERNANCE_VIOLATION")
    return bad


def profile_problems(profile: dict[str, Any]) -> list[tuple[str, str]]:
    thresholds, exits = profile.get("thresholds"), profile.get("exit_codes")
    if not (
        isinstance(thresholds, dict)
        and isinstance(exits, dict)
        and all(
            isinstance(thresholds.get(k), int | float)
            for k in ("green_score_min", "deny_score_below", "median_cloud_deny_above_percent")
        )
        and all(exits.get(k) in (0, 2) for k in ("GREEN", "AMBER", "DENY"))
        and all(
            isinstance(profile.get(k), str) for k in ("profile_id", "profile_version", "spec_hash")
        )
    ):
        return [("PROFILE_INVALID", "/")]
    if profile["spec_hash"] == ZERO_SHA256:
        return [("DIGEST_PLACEHOLDER", "/spec_hash")]
    if not spec_hash_matches(profile["spec_hash"], _without_hash(profile)):
        return [("PROFILE_HASH_MISMATCH", "/spec_hash")]
    if thresholds["deny_score_below"] >= thresholds["green_score_min"]:
        return [("PROFILE_INVALID", "/thresholds")]
    return []


def _without_hash(document: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if key != "spec_hash"}


def expected_decision(
    packet: dict[str, Any], profile: dict[str, Any]
) -> tuple[str, int, list[str], list[str]]:
    """What the gate profile says the packet's decision must be."""
    pre, limits, exits = packet["prefilter"], profile["thresholds"], profile["exit_codes"]
    deny = []
    if pre["asset_missing_count"] > 0:
        deny.append("ASSET_MISSING")
    if (
        pre["median_cloud_percent"] is not None
        and pre["median_cloud_percent"] > limits["median_cloud_deny_above_percent"]
    ):
        deny.append("MEDIAN_CLOUD_TOO_HIGH")
    if pre["items_found"] == 0:
        deny.append("NO_ITEMS")
    if packet["score"] < limits["deny_score_below"]:
        deny.append("SCORE_BELOW_DENY")
    if deny:
        return "DENY", int(exits["DENY"]), sorted(deny), ["BLOCK_PROMOTION", "ROUTE_STEWARD_REVIEW"]
    amber = []
    if pre["missing_etag"]:
        amber.append("MISSING_ETAG")
    if packet["score"] < limits["green_score_min"]:
        amber.append("SCORE_AMBER")
    if amber:
        return "AMBER", int(exits["AMBER"]), sorted(amber), ["ROUTE_STEWARD_REVIEW"]
    return "GREEN", int(exits["GREEN"]), ["ALL_GATES_GREEN"], []


def scan_packet(path: Path, base: Path, profile: dict[str, Any] | None) -> FileReport:
    """One gate packet against the gate profile (KFM's watcher_gate_packet contract)."""
    report = FileReport(rel(path, base), error_codes=READ_CODES | GATE_CODES)
    if profile is None:
        report.add(
            "PROFILE_NOT_CONFIGURED",
            message="no gate profile: decision unverifiable",
            severity=HOLD,
        )
        return report
    for code, where in profile_problems(profile):
        report.add(code, where, "gate profile unusable")
    if report.findings:
        return report
    packet, read_code = read_json(path, max_bytes=1_048_576)
    if packet is None:
        report.add(read_code or "INPUT_READ_ERROR", message="packet unreadable")
        return report
    for code, where in packet_shape(packet):
        report.add(code, where, "packet contract violated")
    if report.findings:
        return report
    if packet["spec_hash"] == ZERO_SHA256:
        report.add("DIGEST_PLACEHOLDER", "/spec_hash")
    elif not spec_hash_matches(packet["spec_hash"], _without_hash(packet)):
        report.add(
            "SPEC_HASH_MISMATCH", "/spec_hash", "packet spec_hash does not match its content"
        )
    for key in ("profile_id", "profile_version", "spec_hash"):
        if packet["profile"][key] != profile[key]:
            report.add("PROFILE_BINDING_MISMATCH", f"/profile/{key}")
    decision, exit_code, reasons, obligations = expected_decision(packet, profile)
    if packet["decision"] != decision:
        report.add(
            "DECISION_MISMATCH",
            "/decision",
            f"{packet['decision']} recorded, profile gives {decision}",
        )
    if packet["process_exit_code"] != exit_code:
        report.add(
            "EXIT_CODE_MISMATCH",
            "/process_exit_code",
            f"{packet['process_exit_code']} recorded, profile gives {exit_code}",
        )
    for key, want, unsorted, differs in (
        ("reason_codes", reasons, "REASON_CODES_NOT_CANONICAL", "REASON_CODES_MISMATCH"),
        ("obligations", obligations, "OBLIGATIONS_NOT_CANONICAL", "OBLIGATIONS_MISMATCH"),
    ):
        if packet[key] != sorted(set(packet[key])):
            report.add(unsorted, f"/{key}", f"{key} not sorted")
        elif packet[key] != want:
            report.add(differs, f"/{key}", f"profile gives {want}")
    if not report.findings:
        report.details.update(decision=packet["decision"], exit_code=packet["process_exit_code"])
    return report
