"""The shared live-side client: loopback only, access-log parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from kfm_runbooks.checks.live import ACCESS_RE, Live
from kfm_runbooks.errors import TargetError
from kfm_runbooks.target import load_target


def test_access_log_line_parses() -> None:
    line = (
        '203.0.113.66 - public [27/Nov/2026:09:27:59 +0000] "GET /api/v1/layers HTTP/1.1" '
        '429 33 "-" "scraper/1.0" 976'
    )
    row = ACCESS_RE.match(line).groupdict()
    assert (row["client"], row["user"], row["status"], row["micros"]) == (
        "203.0.113.66",
        "public",
        "429",
        "976",
    )


def test_refuses_non_loopback(sandbox: Path) -> None:
    live = Live.from_target(load_target(sandbox))
    live.services_path.write_text('{"api": {"url": "http://192.0.2.10:80"}}')
    with pytest.raises(TargetError, match="only loopback"):
        live.request("/health")


def test_services_not_running_is_a_clear_error(sandbox: Path) -> None:
    live = Live.from_target(load_target(sandbox))
    with pytest.raises(TargetError, match="sandbox up"):
        _ = live.url
