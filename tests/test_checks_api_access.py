"""api access checks without services: the roles policy, abusive clients, reversible state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kfm_runbooks.checks.api import abuse as api_abuse
from kfm_runbooks.checks.api import auth as api_auth
from kfm_runbooks.checks.api import base as api_common
from kfm_runbooks.checks.live import Live
from kfm_runbooks.sandbox import create_sandbox
from kfm_runbooks.target import load_target

OWN = api_common.agent("RBK-api-auth-regression")


@pytest.fixture
def live(tmp_path: Path) -> Live:
    """The sandbox's live files (config, state, logs); nothing is started."""
    return Live.from_target(load_target(create_sandbox(tmp_path / "sbx")))


def _lines(*raw: tuple[int, str, str, int, str, str]) -> list[api_common.LogLine]:
    """(second, client, user, status, path, agent) -> parsed access-log lines."""
    out = []
    for second, client, user, status, path, agent in raw:
        text = (
            f"{client} - {user} [27/Nov/2026:09:{second // 60:02d}:{second % 60:02d} +0000] "
            f'"GET {path} HTTP/1.1" {status} 10 "-" "{agent}" 900'
        )
        line = api_common.parse_line(text)
        assert line is not None
        out.append(line)
    return out


# -- roles policy -------------------------------------------------------------------------------


def test_policy_from_the_reference(live: Live) -> None:
    reference = live.config
    assert api_auth.roles(reference) == ["anonymous", "admin", "analyst", "public"]
    assert api_auth.allowed(reference, "analyst", "restricted")
    assert not api_auth.allowed(reference, "public", "restricted")
    assert not api_auth.allowed(reference, "anonymous", "restricted")
    assert api_auth.allowed(reference, "anonymous", "public")
    assert not api_auth.allowed({"roles": {"public": "broken"}}, "public", "restricted")
    served = live.read_state("layers.json")
    assert api_auth.layers(reference, served)["wells-precise"] == "restricted"
    hostile = {"layers": [{"id": "../etc", "sensitivity": "public"}, "x"]}
    assert api_auth.layers({}, hostile) == {}


def test_matrix_findings_leak_overblock_unverified() -> None:
    cells = [
        api_auth.Cell("wells", "restricted", "public", 200, expected=False),
        api_auth.Cell("wells", "restricted", "analyst", 403, expected=True),
        api_auth.Cell("wells", "restricted", "admin", 500, expected=True),
        api_auth.Cell("wells", "restricted", "anonymous", 403, expected=False),
        api_auth.Cell("streams", "public", "anonymous", None, expected=True),
    ]
    found = [(f.code, f.subject, f.field, f.severity) for f in api_auth.matrix_findings(cells)]
    assert found == [
        ("API_AUTHZ_LEAK", "wells", "/roles/public", "blocking"),
        ("API_AUTHZ_OVERBLOCK", "wells", "/roles/analyst", "blocking"),
        ("API_AUTHZ_UNVERIFIED", "wells", "/roles/admin", "hold"),
        ("API_AUTHZ_UNVERIFIED", "streams", "/roles/anonymous", "hold"),
    ]


def test_listing_findings(live: Live) -> None:
    reference, served = live.config, live.read_state("layers.json")
    listed = {"public": ["streams", "wells-precise"], "analyst": ["wells-precise"], "x": None}
    found = api_auth.listing_findings(listed, reference, served)
    assert [(f.subject, f.field) for f in found] == [("wells-precise", "/roles/public")]


def test_log_reads_exclude_own_probes_and_allowed_roles(live: Live) -> None:
    lines = _lines(
        (1, "198.51.100.7", "public", 200, "/api/v1/layers/wells-precise", "curl/8"),
        (2, "198.51.100.8", "-", 200, "/api/v1/layers/wells-precise/tiles/1/2/3", "curl/8"),
        (3, "127.0.0.1", "public", 200, "/api/v1/layers/wells-precise", OWN),  # the runbook
        (4, "198.51.100.9", "analyst", 200, "/api/v1/layers/wells-precise", "qgis"),
        (5, "198.51.100.7", "public", 403, "/api/v1/layers/wells-precise", "curl/8"),
        (6, "198.51.100.7", "public", 200, "/api/v1/layers/streams", "curl/8"),
    )
    reads = api_auth.log_reads(lines, live.config, live.read_state("layers.json"))
    assert {key: len(v) for key, v in reads.items()} == {
        ("wells-precise", "anonymous"): 1,
        ("wells-precise", "public"): 1,
    }
    assert [f.field for f in api_auth.log_findings(reads)] == ["/roles/anonymous", "/roles/public"]
    assert api_auth.log_table(reads)[1]["clients"] == ["198.51.100.7"]


def test_enforcement_switch_is_idempotent_and_keeps_other_keys(live: Live) -> None:
    live.write_state("authz.json", {"enforce_roles": False, "note": "keep"})
    enforced, problems = api_auth.enforcement(live)
    assert not enforced and problems == []
    assert [f.code for f in api_auth.enforcement_findings(enforced)] == [
        "API_AUTHZ_ENFORCEMENT_OFF"
    ]
    first = api_auth.set_enforcement(live, True)
    second = api_auth.set_enforcement(live, True)
    assert first["changed"] and not second["changed"] and first["previous"] is False
    assert live.read_state("authz.json") == {"enforce_roles": True, "note": "keep"}
    (live.state_dir / "authz.json").write_text("{broken")
    enforced, problems = api_auth.enforcement(live)
    assert enforced and problems[0].code == "API_STATE_UNREADABLE"  # the server's default
    with pytest.raises(RuntimeError, match="cannot be read"):
        api_auth.set_enforcement(live, True)


# -- abusive clients -------------------------------------------------------------------------------


def _flood() -> list[api_common.LogLine]:
    raw = []
    for second in range(10):
        raw += [(second, "203.0.113.66", "public", 429, "/api/v1/layers", "scraper/1.0")] * 90
        raw += [(second, "203.0.113.66", "public", 200, "/api/v1/layers", "scraper/1.0")] * 20
        raw += [(second, "198.51.100.7", "public", 200, "/api/v1/stories/x", "Mozilla/5.0")] * 2
        raw += [(second, "127.0.0.1", "-", 200, "/health", OWN)] * 50  # the runbook
    return _lines(*raw)


def test_policy_defaults_and_malformed() -> None:
    assert api_abuse.policy({"rate_limit": {"per_second": 5, "burst": 10}}) == (5.0, 10.0)
    assert api_abuse.policy({}) == (20.0, 40.0)
    assert api_abuse.policy({"rate_limit": {"per_second": "lots"}}) == (20.0, 40.0)
    assert api_abuse.policy({"rate_limit": "x"}) == (20.0, 40.0)


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


def test_block_and_unblock_are_idempotent(live: Live) -> None:
    assert api_abuse.block(live, "203.0.113.66")["changed"]
    assert not api_abuse.block(live, "203.0.113.66")["changed"]
    assert live.read_state("blocklist.json") == {"clients": ["203.0.113.66"]}
    assert api_abuse.unblock(live, "203.0.113.66")["changed"]
    assert not api_abuse.unblock(live, "203.0.113.66")["changed"]
    assert live.read_state("blocklist.json") == {"clients": []}
    with pytest.raises(ValueError, match="refusing to block"):
        api_abuse.block(live, "127.0.0.1")
    (live.state_dir / "blocklist.json").write_text(json.dumps({"clients": "oops"}))
    assert api_abuse.blocked(live) == (set(), [])
    (live.state_dir / "blocklist.json").write_text("not json")
    clients, problems = api_abuse.blocked(live)
    assert clients == set() and problems[0].code == "API_STATE_UNREADABLE"
    with pytest.raises(RuntimeError):
        api_abuse.block(live, "203.0.113.66")


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
