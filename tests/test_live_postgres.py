"""The live sandbox's PostgreSQL: a per-machine template, copied for every start."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import psycopg
import pytest

from kfm_runbooks.sandbox.services import postgres

pytestmark = pytest.mark.slow


def _facts(cluster: postgres.Cluster) -> dict[str, object]:
    with psycopg.connect(cluster.dsn, connect_timeout=10) as conn:
        rows = conn.execute("SELECT count(*) FROM observations").fetchone()
        indexes = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall()
        extensions = conn.execute("SELECT extname FROM pg_extension ORDER BY 1").fetchall()
        port = conn.execute("SHOW port").fetchone()
    return {
        "rows": rows[0] if rows else None,
        "indexes": [r[0] for r in indexes],
        "extensions": [r[0] for r in extensions],
        "port": int(port[0]) if port else None,
    }


def test_a_copy_of_the_template_is_the_same_database_as_a_fresh_load() -> None:
    copied = postgres.start()
    fresh = postgres.start(use_template=False)
    try:
        assert postgres.template(copied.bin_dir) is not None
        a, b = _facts(copied), _facts(fresh)
        assert a["port"] == copied.port and b["port"] == fresh.port  # each its own port
        a.pop("port"), b.pop("port")
        assert a == b and a["rows"] == 200_000
        assert "observations_geom_idx" in a["indexes"]  # type: ignore[operator]
    finally:
        postgres.stop(copied)
        postgres.stop(fresh)


def test_a_template_folder_that_is_not_ours_is_never_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    planted = tmp_path / "kfm-pg-template-planted"
    (planted / "data").mkdir(parents=True)
    (planted / "READY").write_text("loaded\n")
    if os.geteuid() == 0:
        shutil.chown(planted, "postgres", "postgres")
        shutil.chown(planted / "READY", "postgres", "postgres")
    monkeypatch.setattr(postgres, "template_dir", lambda binaries: planted)
    planted.chmod(0o755)  # readable by others: someone could have put it there
    assert postgres._usable(planted) is False
    planted.chmod(0o700)
    assert postgres._usable(planted) is True
    if os.geteuid() == 0:  # owned by another account: never trusted
        shutil.chown(planted, "nobody")
        assert postgres._usable(planted) is False
        shutil.chown(planted, "postgres")
    (planted / "READY").unlink()
    assert postgres._usable(planted) is False
