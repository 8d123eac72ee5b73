"""api access checks without services: the access matrix, abusive clients, the admin ops."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kfm_runbooks.checks.api import abuse as api_abuse
from kfm_runbooks.checks.api import access_log as api_log
from kfm_runbooks.checks.api import auth as api_auth
from kfm_runbooks.checks.api import base as api_common
from kfm_runbooks.checks.common.service import Service
from kfm_runbooks.sandbox import create_sandbox
from kfm_runbooks.sandbox.services import admin_api
from kfm_runbooks.target import load_target

OWN = api_common.agent("RBK-api-auth-regression")
WELLS = "/api/v1/layers/wells-precise"


@pytest.fixture
def sandbox_svc(tmp_path: Path) -> Service:
    """The sandbox's target (its files only; nothing is started)."""
    return Service.from_target(load_target(create_sandbox(tmp_path / "sbx")))


def _matrix(svc: Service) -> api_auth.Matrix:
    value, problems = api_common.reference(svc, "access_matrix", "access matrix")
    matrix, more = api_auth.Matrix.parse(value)
    assert matrix is not None and problems == more == []
    return matrix


def _lines(*raw: tuple[int, str, str, int, str, str]) -> list[api_log.LogLine]:
    """(second, client, user, status, path, agent) -> parsed access-log lines."""
    out = []
    for second, client, user, status, path, agent in raw:
        text = (
            f"{client} - {user} [27/Nov/2026:09:{second // 60:02d}:{second % 60:02d} +0000] "
            f'"GET {path} HTTP/1.1" {status} 10 "-" "{agent}" 900'
        )
        line = api_log.parse_combined(text)
        assert line is not None
        out.append(line)
    return out


# -- the access matrix ---------------------------------------------------------------------------


def test_the_sandbox_describes_its_policy_as_a_policy_file(sandbox_svc: Service) -> None:
    matrix = _matrix(sandbox_svc)
    assert api_auth.roles(sandbox_svc) == ["anonymous", "admin", "analyst", "public"]
    assert matrix.allowed("analyst", "restricted") and matrix.allowed("anonymous", "public")
    assert matrix.allowed("public", "restricted") is False
    assert matrix.allowed("anonymous", "restricted") is False
    assert matrix.allowed("nobody", "public") is None  # not in the matrix: not judged
    assert matrix.resources[WELLS] == "restricted"
    assert matrix.resource_of(WELLS + "/tiles/1/2/3") == WELLS
    assert matrix.resource_of("/api/v1/layers/wells-precise-2") is None
    assert api_auth.role_findings(sandbox_svc, matrix) == []


@pytest.mark.parametrize(
    "value",
    [
        None,
        "not a mapping",
        {"roles": {"public": "broken"}, "resources": {"/a": "public"}},
        {"roles": {"public": ["public"]}, "resources": {"relative": "public"}},
    ],
)
def test_a_matrix_without_roles_or_resources_is_not_a_policy(value: Any) -> None:
    matrix, problems = api_auth.Matrix.parse(value)
    assert matrix is None
    assert [p.code for p in problems] == (
        [] if not isinstance(value, dict) else ["API_REFERENCE_UNREADABLE"]
    )


def test_a_role_the_matrix_does_not_name_is_held(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "api": {"roles": {"ops": {"token_env": "X"}}}}))
    svc = Service.from_target(load_target(path))
    matrix, _ = api_auth.Matrix.parse(
        {"roles": {"anonymous": ["public"]}, "resources": {"/a": "public"}}
    )
    assert matrix is not None
    assert [(f.code, f.subject, f.severity) for f in api_auth.role_findings(svc, matrix)] == [
        ("API_AUTHZ_ROLE_UNKNOWN", "ops", "hold")
    ]


def test_matrix_findings_leak_overblock_unverified() -> None:
    cells = [
        api_auth.Cell("wells", "restricted", "public", 200, expected=False),
        api_auth.Cell("wells", "restricted", "analyst", 403, expected=True),
        api_auth.Cell("wells", "restricted", "admin", 500, expected=True),
        api_auth.Cell("wells", "restricted", "anonymous", 403, expected=False),
        api_auth.Cell("streams", "public", "anonymous", None, expected=True),
        api_auth.Cell("gone", "public", "anonymous", 404, expected=True),
    ]
    found = [(f.code, f.subject, f.field, f.severity) for f in api_auth.matrix_findings(cells)]
    assert found == [
        ("API_AUTHZ_LEAK", "wells", "/roles/public", "blocking"),
        ("API_AUTHZ_OVERBLOCK", "wells", "/roles/analyst", "blocking"),
        ("API_AUTHZ_UNVERIFIED", "wells", "/roles/admin", "hold"),
        ("API_AUTHZ_UNVERIFIED", "streams", "/roles/anonymous", "hold"),
        ("API_AUTHZ_UNVERIFIED", "gone", "/roles/anonymous", "hold"),
    ]
    assert "public → 403 on wells" in api_auth.restriction(cells, [])


def test_listing_findings(sandbox_svc: Service) -> None:
    matrix = _matrix(sandbox_svc)
    streams = "/api/v1/layers/streams"
    listed = {"public": [streams, WELLS, "/api/v1/layers/new"], "analyst": [WELLS], "x": None}
    found = api_auth.listing_findings(listed, matrix)
    assert [(f.code, f.subject, f.field) for f in found] == [
        ("API_AUTHZ_LISTING_LEAK", WELLS, "/roles/public"),
        ("API_AUTHZ_UNCLASSIFIED", "/api/v1/layers/new", "/roles/public"),
    ]


def test_log_reads_exclude_own_probes_and_allowed_roles(sandbox_svc: Service) -> None:
    lines = _lines(
        (1, "198.51.100.7", "public", 200, WELLS, "curl/8"),
        (2, "198.51.100.8", "-", 200, WELLS + "/tiles/1/2/3", "curl/8"),
        (3, "127.0.0.1", "public", 200, WELLS, OWN),  # the runbook
        (4, "198.51.100.9", "analyst", 200, WELLS, "qgis"),
        (5, "198.51.100.7", "public", 403, WELLS, "curl/8"),
        (6, "198.51.100.7", "public", 200, "/api/v1/layers/streams", "curl/8"),
        (7, "198.51.100.7", "mallory", 200, WELLS, "curl/8"),  # no such role: not judged
    )
    reads = api_auth.log_reads(lines, _matrix(sandbox_svc))
    assert {key: len(v) for key, v in reads.items()} == {
        (WELLS, "anonymous"): 1,
        (WELLS, "public"): 1,
    }
    assert [f.field for f in api_auth.log_findings(reads)] == ["/roles/anonymous", "/roles/public"]
    assert api_auth.log_table(reads)[1]["clients"] == ["198.51.100.7"]


def test_the_sandbox_admin_ops_are_idempotent_and_keep_other_keys(tmp_path: Path) -> None:
    folder = create_sandbox(tmp_path / "sbx").parent
    state = folder / "live" / "state"
    (state / "authz.json").write_text(json.dumps({"enforce_roles": False, "note": "keep"}))
    first = admin_api.enforce_roles(folder, {"enforce": True})
    second = admin_api.enforce_roles(folder, {"enforce": True})
    assert first["changed"] and not second["changed"] and first["previous"] is False
    assert json.loads((state / "authz.json").read_text()) == {"enforce_roles": True, "note": "keep"}
    with pytest.raises(ValueError):
        admin_api.enforce_roles(folder, {"enforce": "yes"})
    assert admin_api.block_client(folder, {"client": "203.0.113.66"})["changed"]
    assert not admin_api.block_client(folder, {"client": "203.0.113.66"})["changed"]
    assert admin_api.blocked_clients(folder, {}) == {"clients": ["203.0.113.66"]}
    assert admin_api.unblock_client(folder, {"client": "203.0.113.66"})["changed"]
    assert not admin_api.unblock_client(folder, {"client": "203.0.113.66"})["changed"]
    for bad in ("127.0.0.1", "not-an-ip"):
        with pytest.raises(ValueError, match="refusing"):
            admin_api.block_client(folder, {"client": bad})
    (state / "blocklist.json").write_text(json.dumps({"clients": "oops"}))
    with pytest.raises(ValueError, match="not a list"):
        admin_api.blocked_clients(folder, {})


# -- abusive clients -------------------------------------------------------------------------------


def _flood() -> list[api_log.LogLine]:
    raw = []
    for second in range(10):
        raw += [(second, "203.0.113.66", "public", 429, "/api/v1/layers", "scraper/1.0")] * 90
        raw += [(second, "203.0.113.66", "public", 200, "/api/v1/layers", "scraper/1.0")] * 20
        raw += [(second, "198.51.100.7", "public", 200, "/api/v1/stories/x", "Mozilla/5.0")] * 2
        raw += [(second, "127.0.0.1", "-", 200, "/health", OWN)] * 50  # the runbook
    return _lines(*raw)


def test_policy_from_the_target_never_a_default() -> None:
    assert api_abuse.policy({"per_second": 5, "burst": 10}) == (5.0, 10.0)
    assert api_abuse.policy({"rate_limit": {"per_second": 5}}) == (5.0, 5.0)  # a policy file
    for bad in (None, {}, {"per_second": "lots"}, {"per_second": 0}, "x"):
        assert api_abuse.policy(bad) is None
    assert api_abuse.policy_problems(None, None) == []  # missing: the reference says so
    assert [p.code for p in api_abuse.policy_problems({"x": 1}, None)] == [
        "API_REFERENCE_UNREADABLE"
    ]


def test_client_stats_and_abusive() -> None:
    stats = api_abuse.client_stats(_flood())
    assert [s.client for s in stats] == ["203.0.113.66", "198.51.100.7"]  # own probes excluded
    top = stats[0]
    assert top.requests == 1100 and top.rate == 110.0 and round(top.share_429, 3) == 0.818
    assert top.agents == ("scraper/1.0",) and top.paths == ("/api/v1/layers",)
    assert [s.client for s in api_abuse.abusive(stats, 20, 40, 3.0)] == ["203.0.113.66"]
    assert api_abuse.abusive(stats, 20, 40, 6.0) == []  # 110/s is not above 120/s
    assert api_abuse.abusive(stats, 1, 5000, 3.0) == []  # never more than one burst


def test_findings_blocked_and_unblockable() -> None:
    stats = api_abuse.client_stats(_flood())
    offenders = api_abuse.abusive(stats, 20, 40, 3.0)
    found = api_abuse.findings(offenders, set(), 3.0)
    assert [(f.code, f.subject) for f in found] == [("API_ABUSIVE_CLIENT", "203.0.113.66")]
    assert "scraper/1.0" in found[0].message and "/api/v1/layers" in found[0].message
    done = api_abuse.findings(offenders, {"203.0.113.66"}, 3.0)
    assert [(f.code, f.severity) for f in done] == [("API_ABUSIVE_CLIENT_BLOCKED", "info")]
    loopback = api_abuse.ClientStats("127.0.0.1", 500, 1.0, {200: 500}, ("x",), ("/",))
    assert [f.code for f in api_abuse.findings([loopback], set(), 3.0)] == [
        "API_ABUSIVE_CLIENT",
        "API_ABUSE_UNBLOCKABLE",
    ]


@pytest.mark.parametrize(
    ("client", "ok"),
    [
        ("203.0.113.66", True),
        ("2001:db8::1", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("0.0.0.0", False),
        ("not-an-ip", False),
        ("203.0.113.66, 10.0.0.1", False),
    ],
)
def test_blockable(client: str, ok: bool) -> None:
    assert api_abuse.blockable(client) is ok


def test_blocking_without_an_admin_command_knows_nothing_and_refuses_loopback(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("name: t\n")
    svc = Service.from_target(load_target(path))
    clients, why = api_abuse.blocked(svc)
    assert clients == set() and "no admin command" in why
    with pytest.raises(ValueError, match="refusing to block"):
        api_abuse.block(svc, "127.0.0.1")
    assert "203.0.113.66" in api_abuse.manual_instruction("203.0.113.66", ("scraper/1.0",))


def test_still_abusive_counts_only_unblocked_requests() -> None:
    flood = _flood()
    assert [s.client for s in api_abuse.still_abusive(flood, 10, 20, 3.0)] == ["203.0.113.66"]
    blocked = _lines(
        *[
            (s, "203.0.113.66", "public", 403, "/api/v1/layers", "scraper/1.0")
            for s in range(3)
            for _ in range(300)
        ]
    )
    assert api_abuse.still_abusive(blocked, 3, 20, 3.0) == []


def test_series_per_second() -> None:
    series = api_abuse.series(_flood(), ["203.0.113.66"])
    assert [n for _, n in series["203.0.113.66"]] == [110] * 10
