"""The three infra runbooks against stock services nobody here built (no sandbox).

Each runbook runs in a real kernel with a hand-written target that uses only the documented
keys (README, "Pointing runbooks at production" -> infra), and gets the verdict a human
would give:

- cert-expiry: `openssl s_server` with an expired, a 3-day and a 1-year certificate (made in
  the test, dates relative to now): the first two FAIL (and a manual renewal is recorded,
  the target naming no way to renew), the third PASSes.
- backup-failure: dumps of a separately initdb'd PostgreSQL + PostGIS cluster: a fresh
  `pg_dump -Fc` restored by the drill PASSes; the same dump cut in half FAILs (it still
  lists, only the full read finds it) and `--apply` runs the cron line named as
  `backups.job.run_command`, after which it PASSes; a plain cron line's `pg_dump > file.sql` PASSes
  once drilled and HOLDs without a scratch database (naming the key); a dump older than the
  policy FAILs.
- disk-pressure: a 4 MiB tmpfs filled with rotated logs FAILs, `--apply` moves them to a
  quarantine on another filesystem and PASSes; the cluster's data_directory is measured
  through the database (`postgres: data_directory`).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import Cli
from .helpers import applied_actions, finding_codes, run_json
from .stock import infra as stock
from .stock.postgres import Cluster, stock_postgres

pytestmark = pytest.mark.slow

__all__ = ["stock_postgres"]  # the module fixture, imported for this module
DAY = dt.timedelta(days=1)


def _target(folder: Path, sections: dict[str, Any]) -> Path:
    path = folder / "target.yaml"
    body = {"name": "stock", "kind": "live", **sections}
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def _manual(ws: Path, out: dict[str, Any]) -> list[str]:
    import scrapbook

    book = scrapbook.read_notebook(str(ws / out["notebook"]))
    return [
        s.data["title"]
        for name, s in book.scraps.items()
        if name.startswith("kfm.action.") and s.data.get("manual")
    ]


# --- cert-expiry ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("stock-tls")
    ca = stock.make_pki(folder / "ca")
    pairs = {
        "expired": stock.issue(ca, folder / "expired", valid_for=-2 * DAY, age=90 * DAY),
        "3-day": stock.issue(ca, folder / "3day", valid_for=3 * DAY),
        "1-year": stock.issue(ca, folder / "1year", valid_for=365 * DAY),
    }
    with (
        stock.tls_server(*pairs["expired"]) as expired,
        stock.tls_server(*pairs["3-day"]) as three,
        stock.tls_server(*pairs["1-year"]) as year,
    ):
        yield {"folder": folder, "expired": expired, "3-day": three, "1-year": year}


def _tls(endpoints: dict[str, Any], *names: str) -> list[dict[str, Any]]:
    ca = str(endpoints["folder"] / "ca" / "ca.crt")
    return [
        {"url": endpoints[n], "hostname": "localhost", "ca_file": ca, "min_days": 14} for n in names
    ]


def test_cert_expiry_judges_stock_openssl_endpoints(
    cli: Cli, incident: tuple[str, Path], endpoints: dict[str, Any], tmp_path: Path
) -> None:
    incident_id, ws = incident
    target = _target(tmp_path, {"tls": _tls(endpoints, "expired", "3-day", "1-year")})
    out = run_json(cli, "RBK-infra-cert-expiry", incident_id, target)
    assert out["_exit"] == 1 and out["statuses"]["tls-expiry"] == "FAIL", out
    [expiry] = [c for c in out["checks"] if c["name"] == "tls-expiry"]
    assert "has expired" in expiry["detail"] and "expires in 3 days" in expiry["detail"]
    assert expiry["coverage"]["examined"] == 3 == expiry["coverage"]["in_scope"]
    for name in ("tls-hostname", "tls-chain"):
        assert out["statuses"][name] == "PASS", out  # the expired one's chain is its expiry
    assert "tls-served-is-installed" not in out["statuses"]  # no installed files named
    assert finding_codes(ws, out) == ["INFRA_TLS_CERT_EXPIRED", "INFRA_TLS_CERT_EXPIRING"]
    assert _manual(ws, out) == ["Renew the certificate of localhost"] * 2
    healthy = _target(tmp_path, {"tls": _tls(endpoints, "1-year")})
    good = run_json(cli, "RBK-infra-cert-expiry", incident_id, healthy)
    assert good["_exit"] == 0 and set(good["statuses"].values()) == {"PASS"}, good
    unknown_ca = _target(tmp_path, {"tls": [_tls(endpoints, "1-year")[0] | {"ca_file": None}]})
    held = run_json(cli, "RBK-infra-cert-expiry", incident_id, unknown_ca)
    assert held["statuses"]["tls-chain"] == "HOLD" and held["_exit"] != 0, held


# --- backup-failure ------------------------------------------------------------------------


def _backups(
    folder: Path, cluster: Cluster, fmt: str, scratch: bool, job: dict[str, Any] | None = None
) -> Path:
    section: dict[str, Any] = {
        "path": "dumps",
        "format": fmt,
        "max_age": "26h",
        "tables": ["public.points"],
    }
    if scratch:
        section["restore"] = {"scratch_dsn_env": "KFM_STOCK_SCRATCH_DSN"}
    if job:
        section["job"] = job
    return _target(folder, {"postgres": {"bin_dir": str(cluster.bin_dir)}, "backups": section})


def test_backup_failure_judges_stock_pg_dump_files(
    cli: Cli,
    incident: tuple[str, Path],
    stock_postgres: Cluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KFM_STOCK_SCRATCH_DSN", stock_postgres.dsn)
    incident_id, ws = incident
    good_dir, cut_dir = tmp_path / "good", tmp_path / "cut"
    good = stock.pg_dump_custom(
        stock_postgres.bin_dir, stock_postgres.dsn, good_dir / "dumps/kfm-1.dump"
    )
    out = run_json(
        cli,
        "RBK-infra-backup-failure",
        incident_id,
        _backups(good_dir, stock_postgres, "custom", True),
    )
    assert out["_exit"] == 0 and set(out["statuses"].values()) == {"PASS"}, out
    (cut_dir / "dumps").mkdir(parents=True)
    stock.truncate(good, cut_dir / "dumps/kfm-1.dump")
    cut = run_json(
        cli,
        "RBK-infra-backup-failure",
        incident_id,
        _backups(cut_dir, stock_postgres, "custom", True),
    )
    assert cut["_exit"] == 1, cut
    assert cut["statuses"]["backup-readable"] == "FAIL"
    assert cut["statuses"]["backup-restorable"] == "FAIL"
    assert cut["statuses"]["backup-freshness"] == "PASS"  # fresh, but cut short
    assert "INFRA_BACKUP_UNREADABLE" in finding_codes(ws, cut)
    assert _manual(ws, cut) == ["Take a fresh backup now"]  # no run_command named
    cron = (  # the crontab line itself, run now through the target's run_command
        f'{stock_postgres.bin_dir}/pg_dump -Fc "$KFM_STOCK_SCRATCH_DSN" '
        "> dumps/kfm-$(date -u +%Y%m%dT%H%M%SZ).dump"
    )
    with_job = _backups(
        cut_dir, stock_postgres, "custom", True, {"run_command": ["/bin/sh", "-c", cron]}
    )
    fixed = run_json(cli, "RBK-infra-backup-failure", incident_id, with_job, "--apply")
    assert fixed["_exit"] == 0 and set(fixed["statuses"].values()) == {"PASS"}, fixed
    [taken] = [a for a in applied_actions(ws) if not a.get("manual")]
    assert taken["command"] == f"/bin/sh -c {cron}" and taken["undo"] is None
    assert (
        taken["result"]["file"].startswith("kfm-2")
        and "public.points" in taken["result"]["toc_tables"]
    )
    stock.age(good, 30)
    stale = run_json(
        cli,
        "RBK-infra-backup-failure",
        incident_id,
        _backups(good_dir, stock_postgres, "custom", True),
    )
    assert stale["_exit"] == 1 and stale["statuses"]["backup-freshness"] == "FAIL", stale
    assert stale["statuses"]["backup-restorable"] == "PASS"  # old, but it restores


def test_a_plain_cron_dump_passes_once_drilled(
    cli: Cli,
    incident: tuple[str, Path],
    stock_postgres: Cluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KFM_STOCK_SCRATCH_DSN", stock_postgres.dsn)
    incident_id, _ = incident
    stock.cron_dump_plain(stock_postgres.bin_dir, stock_postgres.dsn, tmp_path / "dumps")
    drilled = run_json(
        cli,
        "RBK-infra-backup-failure",
        incident_id,
        _backups(tmp_path, stock_postgres, "plain", True),
    )
    assert drilled["_exit"] == 0 and set(drilled["statuses"].values()) == {"PASS"}, drilled
    undrilled = run_json(
        cli,
        "RBK-infra-backup-failure",
        incident_id,
        _backups(tmp_path, stock_postgres, "plain", False),
    )
    assert undrilled["statuses"]["backup-readable"] == "PASS"
    assert undrilled["statuses"]["backup-restorable"] == "HOLD" and undrilled["_exit"] != 0
    [restorable] = [c for c in undrilled["checks"] if c["name"] == "backup-restorable"]
    assert "backups.restore.scratch_dsn_env" in restorable["detail"]
    left = stock_postgres.sql("SELECT datname FROM pg_database WHERE datname LIKE 'kfm_restore%'")
    assert left == []  # every drill dropped its database


# --- disk-pressure -------------------------------------------------------------------------


def _fill(root: Path) -> None:
    """Rotated logs written two hours ago: 3.5 of the volume's 4 MiB."""
    (root / "logs").mkdir(exist_ok=True)
    for n in range(1, 8):
        path = root / "logs" / f"app.log.{n}"
        path.write_bytes(b"127.0.0.1 - - [03/Dec/2026] GET / 200\n" * 13_000)
        stamp = time.time() - 7200
        os.utime(path, (stamp, stamp))
    (root / "logs/app.log").write_bytes(b"live\n")


def test_disk_pressure_on_a_stock_tmpfs(
    cli: Cli,
    incident: tuple[str, Path],
    stock_postgres: Cluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    incident_id, ws = incident
    monkeypatch.setenv("KFM_STOCK_DSN", stock_postgres.dsn)
    target = _target(
        tmp_path,
        {
            "postgres": {"dsn_env": "KFM_STOCK_DSN", "bin_dir": str(stock_postgres.bin_dir)},
            "disk": {
                "quarantine": "quarantine",
                "volumes": [
                    {
                        "name": "data",
                        "path": "mnt",
                        "dedicated": True,
                        "min_free_percent": 20,
                        "min_free_inodes_percent": 10,
                        "reclaimable": {"rotated_logs": ["logs/*.log.[0-9]*"]},
                    },
                    {
                        "name": "postgres",
                        "postgres": "data_directory",
                        "min_free_percent": 0,
                        "min_free_inodes_percent": 0,
                    },
                ],
            },
        },
    )
    try:
        mounted = stock.small_tmpfs(tmp_path / "mnt")
        root = mounted.__enter__()
    except PermissionError as exc:  # fall back honestly: a plain folder is never PASS
        (tmp_path / "mnt").mkdir(exist_ok=True)
        out = run_json(cli, "RBK-infra-disk-pressure", incident_id, target)
        assert out["statuses"]["volume-data"] == "HOLD" and out["_exit"] == 1, out
        pytest.skip(f"no tmpfs ({exc}): the plain-folder fallback HOLDs, checked")
    try:
        _fill(root)
        out = run_json(cli, "RBK-infra-disk-pressure", incident_id, target)
        assert out["_exit"] == 1 and out["statuses"]["volume-data"] == "FAIL", out
        assert out["statuses"]["volume-postgres"] == "PASS"  # measured through the database
        assert finding_codes(ws, out) == ["INFRA_DISK_SPACE_LOW"]
        fixed = run_json(cli, "RBK-infra-disk-pressure", incident_id, target, "--apply")
        assert fixed["_exit"] == 0 and set(fixed["statuses"].values()) == {"PASS"}, fixed
        [moved] = applied_actions(ws)
        assert moved["result"]["files"] == 7 and moved["undo"]["op"] == "infra.restore_reclaimed"
        assert sorted(p.name for p in (root / "logs").iterdir()) == ["app.log"]
    finally:
        mounted.__exit__(None, None, None)
        shutil.rmtree(tmp_path / "quarantine", ignore_errors=True)


def test_directory_and_tar_dumps_are_read_whole_and_drilled(
    stock_postgres: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other pg_dump formats, at the library level (no kernel): read whole, drilled,
    and a damaged one found."""
    import subprocess

    from kfm_runbooks.checks.infra import backup as infra_backup
    from kfm_runbooks.target import load_target

    monkeypatch.setenv("KFM_STOCK_SCRATCH_DSN", stock_postgres.dsn)
    pg_dump = str(stock_postgres.bin_dir / "pg_dump")
    for fmt, flag, name in (("directory", "-Fd", "kfm-1"), ("tar", "-Ft", "kfm-1.tar")):
        folder = tmp_path / fmt
        (folder / "dumps").mkdir(parents=True)
        dest = folder / "dumps" / name
        subprocess.run([pg_dump, flag, f"--file={dest}", stock_postgres.dsn], check=True)
        config = infra_backup.BackupConfig.from_target(
            load_target(_backups(folder, stock_postgres, fmt, True))
        )
        report = infra_backup.assess(config)
        assert report.codes == [] and report.read is not None, (fmt, report.findings)
        assert "public.points" in report.read.toc_tables
        proof = infra_backup.verify_restore(config, report)
        assert proof.status == "PASS" and proof.drill is not None, (fmt, proof.findings)
        assert proof.drill.counts["public.points"] == 50_000
        damaged = (
            max((dest).glob("*.dat.gz"), key=lambda p: p.stat().st_size)
            if fmt == "directory"
            else dest
        )
        data = damaged.read_bytes()
        damaged.write_bytes(data[: len(data) // 2])
        assert infra_backup.assess(config).codes == [infra_backup.UNREADABLE], fmt
