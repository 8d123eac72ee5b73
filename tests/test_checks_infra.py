"""Infra check code without the live services: real statvfs, real TLS, synthetic records.

Disk: thresholds judged on real measurements, reclaimable candidates chosen safely
(symlinks, young or open files, unsafe patterns), gzip quarantine and byte-identical restore
(on a tmpfs when we may mount one). TLS: openssl-made certificates read over a real
loopback handshake, a renewed certificate served without a restart, hostname rules.
Backup: dump files found, aged and read whole (plain SQL dumps here; custom dumps from a
real PostgreSQL in test_stock_infra.py), the job's optional records, hostile input turned
into findings.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import yaml

from kfm_runbooks.checks.infra import backup as infra_backup
from kfm_runbooks.checks.infra import disk as infra_disk
from kfm_runbooks.checks.infra import pki as infra_pki
from kfm_runbooks.checks.infra import tls as infra_tls
from kfm_runbooks.checks.infra.config import InfraConfig
from kfm_runbooks.errors import SetupError, TargetError
from kfm_runbooks.sandbox.services import tls, volumes
from kfm_runbooks.target import load_target

from . import hostile


def _target(folder: Path, sections: dict[str, Any]) -> Path:
    path = folder / "target.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "kind": "fixture", **sections}))
    return path


def test_checks_import_light() -> None:
    code = (
        "import sys\n"
        "import kfm_runbooks.checks.infra.disk, kfm_runbooks.checks.infra.tls\n"
        "import kfm_runbooks.checks.infra.backup, kfm_runbooks.sandbox.services.tls\n"
        "heavy = [m for m in ('pandas', 'scrapbook', 'papermill', 'pydantic', 'nbformat',"
        " 'jupyter_client', 'psycopg') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# --- disk -------------------------------------------------------------------------------


def _disk_config(tmp_path: Path, **volume: Any) -> InfraConfig:
    (tmp_path / "vol").mkdir(exist_ok=True)
    spec = {"name": "vol", "path": "vol", **volume}
    target = _target(
        tmp_path,
        {
            "disk": {
                "quarantine": "quarantine",
                "volumes": [spec, {"name": "ev", "workspace": "10_evidence"}],
            }
        },
    )
    return InfraConfig.from_target(load_target(target))


def _old(path: Path, data: bytes = b"x" * 100, age: float = 7200) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def test_thresholds_are_judged_on_real_measurements(tmp_path: Path) -> None:
    config = _disk_config(tmp_path, min_free_percent=0, min_free_inodes_percent=0)
    vol, evidence = infra_disk.volumes(config, tmp_path / "ws")
    report = infra_disk.assess(vol)
    assert report.status == "PASS" and report.usage is not None
    assert report.usage.total > 0 and 0 < report.usage.free_percent <= 100
    assert infra_disk.assess(evidence).findings[0].code == infra_disk.MISSING
    strict = infra_disk.assess(
        infra_disk.VolumeSpec("vol", vol.path, min_free_percent=101, min_free_inodes_percent=101)
    )
    codes = [f.code for f in strict.findings]
    assert infra_disk.SPACE_LOW in codes and strict.status == "FAIL"
    assert strict.detail().startswith("free space below the 101% threshold")


def test_a_database_volume_without_a_reachable_database_holds(tmp_path: Path) -> None:
    (tmp_path / "vol").mkdir()
    target = _target(
        tmp_path,
        {
            "postgres": {"dsn_file": "secrets/none.dsn"},
            "disk": {"volumes": [{"name": "pg", "postgres": "data_directory"}]},
        },
    )
    [spec] = infra_disk.volumes(InfraConfig.from_target(load_target(target)))
    report = infra_disk.assess(spec)
    assert report.status == "HOLD" and "postgres.dsn_file" in report.findings[0].message
    with pytest.raises(TargetError, match="give 'path'"):
        bad = _target(tmp_path, {"disk": {"volumes": [{"name": "x", "service": "postgres"}]}})
        infra_disk.volumes(InfraConfig.from_target(load_target(bad)))


def test_unknown_and_not_dedicated_volumes_hold(tmp_path: Path) -> None:
    report = infra_disk.assess(infra_disk.VolumeSpec("pg", None, problem="service down"))
    assert report.status == "HOLD" and report.findings[0].code == infra_disk.UNAVAILABLE
    (tmp_path / "plain").mkdir()
    plain = infra_disk.assess(
        infra_disk.VolumeSpec("data", tmp_path / "plain", dedicated=True, min_free_percent=0)
    )
    assert [f.code for f in plain.findings] == [infra_disk.NOT_DEDICATED]
    assert plain.status == "HOLD"


def test_reclaimable_candidates_are_chosen_safely(tmp_path: Path) -> None:
    config = _disk_config(
        tmp_path,
        reclaimable={
            "temp": ["tmp/*.tmp", "../*", "/etc/*"],
            "rotated_logs": ["logs/*.log.[0-9]*"],
        },
    )
    root = tmp_path / "vol"
    _old(root / "tmp/a.tmp")
    _old(root / "tmp/young.tmp", age=10)
    _old(root / "logs/app.log.1")
    _old(root / "logs/app.log")  # the active log: no pattern matches it
    _old(tmp_path / "outside.tmp")
    (root / "tmp/link.tmp").symlink_to(tmp_path / "outside.tmp")
    held = _old(root / "tmp/held.tmp")
    spec = infra_disk.volumes(config)[0]
    with held.open("rb"):
        candidates, problems = infra_disk.reclaimable(spec, held=infra_disk.open_paths())
    assert [(c.kind, c.rel) for c in candidates] == [
        ("rotated_logs", "logs/app.log.1"),
        ("temp", "tmp/a.tmp"),
    ]
    assert [f.code for f in problems] == [infra_disk.UNSAFE_PATTERN] * 2
    report = infra_disk.assess(spec)
    reclaim = next(f for f in report.findings if f.code == infra_disk.RECLAIMABLE)
    assert reclaim.message == "3 reclaimable file(s): 1 rotated_logs, 2 temp"  # held.tmp closed now


def test_growth_and_fill_projection(tmp_path: Path) -> None:
    now = time.time()
    _old(tmp_path / "a", b"x" * 1000, age=1800)
    _old(tmp_path / "b", b"x" * 500, age=3 * 3600 + 5)
    _old(tmp_path / "old", b"x" * 999, age=30 * 86400)
    buckets = infra_disk.growth(tmp_path, now)
    assert buckets[0] == 1000 and buckets[3] == 500 and sum(buckets) == 1500
    usage = infra_disk.measure("t", tmp_path)
    assert infra_disk.hours_to_full(usage, buckets) == pytest.approx(usage.avail / 250)
    assert infra_disk.hours_to_full(usage, [0] * 24) is None
    tops = infra_disk.consumers(tmp_path, 2)
    assert [e["entry"] for e in tops["entries"]] == ["a", "old"]


def test_reclaim_refuses_the_same_filesystem(tmp_path: Path) -> None:
    config = _disk_config(tmp_path, reclaimable={"temp": ["*.tmp"]})
    _old(tmp_path / "vol/x.tmp")
    spec = infra_disk.volumes(config)[0]
    with pytest.raises(TargetError, match="same filesystem"):
        infra_disk.reclaim(spec, infra_disk.quarantine_dir(config), ["x.tmp"])
    assert (tmp_path / "vol/x.tmp").exists()
    with pytest.raises(TargetError, match="not a plain path"):
        infra_disk._inside(tmp_path / "vol", "../target.yaml")


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MiB tmpfs (root only), unmounted afterwards."""
    point = tmp_path / "mnt"
    point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,nr_inodes=64", "kfm-test", str(point)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"mount not permitted: {done.stderr.decode().strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


def test_reclaim_and_restore_are_byte_identical_and_idempotent(
    small_volume: Path, tmp_path: Path
) -> None:
    files = {f"tmp/{n}.tmp": os.urandom(2000) for n in range(40)} | {
        "logs/app.log.1": b"line\n" * 100_000
    }
    for rel, data in files.items():
        _old(small_volume / rel, data)
    spec = infra_disk.VolumeSpec(
        "small",
        small_volume,
        dedicated=True,
        min_free_percent=90,
        min_free_inodes_percent=50,
        reclaimable=(("temp", "tmp/*.tmp"), ("rotated_logs", "logs/*.log.[0-9]*")),
    )
    before = infra_disk.assess(spec)
    assert {infra_disk.SPACE_LOW, infra_disk.INODES_LOW} <= {f.code for f in before.findings}
    quarantine = tmp_path / "quarantine"
    result = infra_disk.reclaim(spec, quarantine, [c.rel for c in before.candidates])
    assert result["files"] == 41 and result["stored_bytes"] < result["bytes"]
    assert infra_disk.assess(spec).status == "PASS"
    again = infra_disk.reclaim(spec, quarantine, [c.rel for c in before.candidates])
    assert again == {"batch": None, "files": 0, "bytes": 0}  # idempotent
    (small_volume / "tmp/0.tmp").write_bytes(b"new bytes")  # came back meanwhile: a conflict
    undone = infra_disk.restore_batch(quarantine, result["batch"])
    assert undone["restored"] == 40 and undone["conflicts"] == ["tmp/0.tmp"]
    for rel, data in files.items():
        if rel != "tmp/0.tmp":
            assert (small_volume / rel).read_bytes() == data
    (small_volume / "tmp/0.tmp").unlink()
    assert infra_disk.restore_batch(quarantine, result["batch"])["restored"] == 1
    assert (small_volume / "tmp/0.tmp").read_bytes() == files["tmp/0.tmp"]
    assert infra_disk.restore_batch(quarantine, result["batch"])["restored"] == 0
    with pytest.raises(TargetError):
        infra_disk.restore_batch(quarantine, "../x")


def test_disk_pressure_fault_refuses_a_plain_folder(tmp_path: Path) -> None:
    volumes.data_dir(tmp_path).mkdir(parents=True)
    with pytest.raises(SetupError, match="real disk"):
        volumes.pressure(tmp_path, True)
    assert not any(volumes.data_dir(tmp_path).iterdir())


# --- TLS ---------------------------------------------------------------------------------


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pki")
    tls.make_ca(folder / "ca")
    return folder


def _tls_config(folder: Path, port: int, **extra: Any) -> infra_tls.TLSConfig:
    entry = {
        "url": f"https://127.0.0.1:{port}",
        "hostname": "localhost",
        "ca_file": "ca/ca.crt",
        "cert_file": "server/server.crt",
        "key_file": "server/server.key",
        "renew": {
            "issuer_cert": "ca/ca.crt",
            "issuer_key": "ca/ca.key",
            "archive": "server/archive",
        },
    }
    entry = {k: v for k, v in (entry | extra).items() if v is not None}
    target = _target(folder, {"tls": [entry]})
    return infra_tls.TLSConfig.from_target(load_target(target))


def test_served_certificate_is_read_renewed_and_reloaded_without_restart(pki: Path) -> None:
    tls.issue(pki / "ca/ca.crt", pki / "ca/ca.key", pki / "server", days=3)
    server = tls.serve_tls(
        ("127.0.0.1", 0), _Hello, pki / "server/server.crt", pki / "server/server.key"
    )
    try:
        config = _tls_config(pki, server.server_address[1])
        before = infra_tls.probe(config)
        assert [f.code for f in before.findings] == [infra_tls.EXPIRING]
        assert (
            before.findings[0].message == "expires in 3 days, within the 14-day renewal threshold"
        )
        assert before.served is not None and ("DNS", "localhost") in before.served.san
        result = infra_tls.renew(config)
        assert result["served"] and result["archive"]
        after = infra_tls.probe(config)
        assert after.findings == [] and after.served is not None
        assert after.served.sha256 == result["fingerprint"] != before.served.sha256
        assert server.contexts.loads == 2  # reloaded once, same listener
        undone = infra_tls.reinstall(config, result["archive"])
        assert undone["reinstalled"] and undone["served"]
        assert infra_tls.reinstall(config, result["archive"])["reinstalled"] is False
        assert [f.code for f in infra_tls.probe(config).findings] == [infra_tls.EXPIRING]
        context = __import__("ssl").create_default_context(cafile=str(pki / "ca/ca.crt"))
        url = f"https://localhost:{server.server_address[1]}/"
        with urllib.request.urlopen(url, context=context, timeout=10) as answer:
            assert answer.read() == b"ok"
    finally:
        server.shutdown()
        server.server_close()


def test_renewal_by_command_must_end_in_a_served_new_certificate(pki: Path, tmp_path: Path) -> None:
    folder = tmp_path / "pki"
    shutil.copytree(pki, folder)
    tls.issue(folder / "ca/ca.crt", folder / "ca/ca.key", folder / "server", days=3)
    server = tls.serve_tls(
        ("127.0.0.1", 0), _Hello, folder / "server/server.crt", folder / "server/server.key"
    )
    code = (
        "from pathlib import Path\n"
        "from kfm_runbooks.checks.infra.pki import issue\n"
        "issue(Path('ca/ca.crt'), Path('ca/ca.key'), Path('server'), days=90)\n"
    )
    try:
        port = server.server_address[1]
        config = _tls_config(folder, port, renew={"command": [sys.executable, "-c", code]})
        assert config.renewal == "command"
        before = infra_tls.probe(config)
        assert before.served is not None and [f.code for f in before.findings] == [
            infra_tls.EXPIRING
        ]
        result = infra_tls.renew_by_command(config, before.served.sha256)
        assert result["served"] and result["fingerprint"] != before.served.sha256
        assert infra_tls.probe(config).findings == []
        idle = _tls_config(folder, port, renew={"command": [sys.executable, "-c", "pass"]})
        served = infra_tls.probe(idle).served
        assert served is not None
        with pytest.raises(RuntimeError, match="still serves the previous certificate"):
            infra_tls.renew_by_command(idle, served.sha256)  # exit 0 is not a renewal
        manual = _tls_config(folder, port, renew=None)
        assert manual.renewal == "manual"
        assert "reload the server" in infra_tls.manual_instruction(manual)
        assert infra_tls.issuer_usable(_tls_config(folder, port))
        assert not infra_tls.issuer_usable(manual)
    finally:
        server.shutdown()
        server.server_close()


def test_untrusted_chain_and_wrong_hostname(pki: Path, tmp_path: Path) -> None:
    other_ca = tls.make_ca(tmp_path / "other")
    tls.issue(*other_ca, tmp_path / "srv", hostname="tiles.example", ips=(), days=30)
    server = tls.serve_tls(
        ("127.0.0.1", 0), _Hello, tmp_path / "srv/server.crt", tmp_path / "srv/server.key"
    )
    try:
        config = _tls_config(pki, server.server_address[1])
        codes = sorted(f.code for f in infra_tls.probe(config).findings)
        assert codes == [infra_tls.CHAIN, infra_tls.HOSTNAME, infra_tls.STALE_SERVED]
    finally:
        server.shutdown()
        server.server_close()


def test_unreachable_and_remote_endpoints(pki: Path) -> None:
    config = _tls_config(pki, 9)  # discard port: nothing listens on loopback
    probe = infra_tls.probe(config)
    assert [f.code for f in probe.findings] == [infra_tls.UNREACHABLE]
    checks = infra_tls.verification_checks([config], [probe])
    assert {c.status for c in checks} == {"HOLD"} and {c.examined for c in checks} == {0}
    remote = _tls_config(pki, 443, url="https://example.org/")
    with pytest.raises(TargetError, match=r"remote\.allow"):
        remote.endpoint()  # refused before any connection ...
    refused = infra_tls.probe(remote)  # ... and judged as nothing read: HOLD, never PASS
    assert [(f.code, f.severity) for f in refused.findings] == [(infra_tls.UNREACHABLE, "hold")]
    assert "remote.allow" in refused.findings[0].message
    with pytest.raises(TargetError, match="https URL"):
        _tls_config(pki, 443, url="http://127.0.0.1:80/")
    allowed = yaml.safe_load((pki / "target.yaml").read_text()) | {
        "remote": {"allow": ["example.org"]}
    }
    allowed["tls"][0]["url"] = "https://example.org/"
    (pki / "target.yaml").write_text(yaml.safe_dump(allowed))
    assert infra_tls.TLSConfig.from_target(load_target(pki / "target.yaml")).endpoint() == (
        "example.org",
        443,
    )
    empty = _target(pki, {})
    assert infra_tls.TLSConfig.all(load_target(empty)) == []
    assert [c.status for c in infra_tls.verification_checks([], [])] == ["HOLD"]


def _served(**changes: Any) -> infra_tls.Served:
    now = datetime.now(UTC)
    base = {
        "sha256": "0" * 64,
        "subject": "CN=x",
        "issuer": "CN=ca",
        "serial": "1",
        "not_before": now - timedelta(days=1),
        "not_after": now + timedelta(days=60),
        "san": (("DNS", "*.kfm.example"), ("IP Address", "127.0.0.1")),
        "protocol": "TLSv1.3",
    }
    return infra_tls.Served(**(base | changes))


def test_hostname_rules_and_expiry_edges(pki: Path) -> None:
    served = _served()
    assert infra_tls.hostname_matches(served, "tiles.kfm.example")
    assert not infra_tls.hostname_matches(served, "a.b.kfm.example")
    assert not infra_tls.hostname_matches(served, "kfm.example")
    assert infra_tls.hostname_matches(served, "127.0.0.1")
    config = _tls_config(pki, 1, hostname="tiles.kfm.example", cert_file=None, key_file=None)
    now = datetime.now(UTC)
    expired = infra_tls.evaluate(config, _served(not_after=now - timedelta(hours=1)), "x", now)
    assert [f.code for f in expired] == [infra_tls.EXPIRED]  # the chain error is the expiry
    future = infra_tls.evaluate(config, _served(not_before=now + timedelta(days=1)), None, now)
    assert [f.code for f in future] == [infra_tls.NOT_YET_VALID]
    assert infra_tls.days_phrase(0.2) == "1 day" and infra_tls.days_phrase(2.01) == "3 days"


# --- backup ------------------------------------------------------------------------------

PLAIN = (
    "--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\n"
    "COPY public.counties (id, name) FROM stdin;\n1\tAllen\n\\.\n\n"
    "--\n-- PostgreSQL database dump complete\n--\n\n"
)


def _backup_config(tmp_path: Path, **backups: Any) -> infra_backup.BackupConfig:
    (tmp_path / "backups").mkdir(exist_ok=True)
    section = {"path": "backups", "format": "plain", "max_age": "26h", **backups}
    target = _target(tmp_path, {"backups": section})
    return infra_backup.BackupConfig.from_target(load_target(target))


def _dump(tmp_path: Path, name: str, hours_ago: float, text: str = PLAIN) -> Path:
    path = tmp_path / "backups" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode())
    stamp = time.time() - hours_ago * 3600
    os.utime(path, (stamp, stamp))
    return path


def test_backup_keys_are_checked_when_read(tmp_path: Path) -> None:
    for bad, match in [
        ({"path": "nowhere"}, "is not a folder"),
        ({"format": "zip"}, "one of custom"),
        ({"max_age": "soon"}, "not an age"),
        ({"job": {"run_command": "pg_dump > x"}}, "list of arguments"),
        ({"pattern": "../*.dump"}, "file name pattern"),
    ]:
        with pytest.raises(TargetError, match=match):
            _backup_config(tmp_path, **bad)
    assert infra_backup.parse_age("90m", "k") == 1.5 and infra_backup.parse_age(2, "k") == 2
    assert infra_backup.parse_age("2d", "k") == 48
    with pytest.raises(TargetError, match="no 'backups' section"):
        infra_backup.BackupConfig.from_target(load_target(_target(tmp_path, {})))


def test_the_newest_dump_is_aged_and_read_whole(tmp_path: Path) -> None:
    config = _backup_config(tmp_path)
    assert infra_backup.assess(config).codes == [infra_backup.NO_BACKUP]
    _dump(tmp_path, "kfm-old.sql", 50)
    _dump(tmp_path, "kfm-new.sql", 2)
    _dump(tmp_path, "kfm-running.sql.partial", 0, "-- PostgreSQL database dump\n")
    report = infra_backup.assess(config)
    assert report.codes == [] and report.newest is not None
    assert report.newest.name == "kfm-new.sql" and report.read is not None
    assert report.read.toc_tables == ["public.counties"]
    assert [f.code for f in report.findings] == [infra_backup.IN_PROGRESS]
    checks = {c.name: c for c in infra_backup.verification_checks(config, report, None)}
    assert checks["backup-readable"].status == "PASS"
    assert "proven by the restore drill only" in checks["backup-readable"].detail
    assert checks["backup-restorable"].status == "HOLD"
    proof = infra_backup.verify_restore(config, report)
    assert proof.status == "HOLD" and "scratch_dsn_env" in proof.findings[0].message
    unset = _backup_config(tmp_path, restore={"scratch_dsn_env": "KFM_TEST_UNSET_SCRATCH_DSN"})
    proof = infra_backup.verify_restore(unset, infra_backup.assess(unset))
    assert proof.status == "HOLD" and "KFM_TEST_UNSET_SCRATCH_DSN" in proof.findings[0].message
    _dump(tmp_path, "kfm-new.sql", 27)  # nothing newer than 26 h
    os.utime(tmp_path / "backups/kfm-old.sql", (time.time() - 180000,) * 2)
    assert infra_backup.assess(config).codes == [infra_backup.STALE]


def test_a_cut_short_or_empty_dump_fails(tmp_path: Path) -> None:
    config = _backup_config(tmp_path, tables=["counties", "public.observations"])
    _dump(tmp_path, "kfm-1.sql", 1, PLAIN[: len(PLAIN) // 2])
    report = infra_backup.assess(config)
    assert report.codes == [infra_backup.UNREADABLE]
    assert "no 'dump complete' footer" in report.findings[0].message
    assert infra_backup.verify_restore(config, report).status == "FAIL"
    _dump(tmp_path, "kfm-2.sql", 0.5, "")
    assert "empty" in infra_backup.assess(config).findings[0].message
    with gzip.open(tmp_path / "backups/kfm-3.sql.gz", "wb") as out:
        out.write(PLAIN.encode())
    report = infra_backup.assess(config)
    assert report.newest is not None and report.newest.name == "kfm-3.sql.gz"
    assert report.codes == [infra_backup.TABLE_MISSING]  # no observations in it
    data = (tmp_path / "backups/kfm-3.sql.gz").read_bytes()
    (tmp_path / "backups/kfm-3.sql.gz").write_bytes(data[: len(data) - 12])
    assert infra_backup.assess(config).codes == [infra_backup.UNREADABLE]


def test_a_custom_dump_pg_restore_cannot_read_fails(tmp_path: Path) -> None:
    config = _backup_config(tmp_path, format="custom")
    _dump(tmp_path, "kfm-1.dump", 1, "PGDMP not really")
    report = infra_backup.assess(config)
    assert report.codes == [infra_backup.UNREADABLE]
    assert report.findings[0].message.startswith("pg_restore cannot read it whole")


def test_a_read_that_never_ends_is_held_not_judged(tmp_path: Path) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "pg_restore").write_text("#!/bin/sh\nexec sleep 600\n")  # never finishes
    (tools / "pg_restore").chmod(0o755)
    (tmp_path / "backups").mkdir()
    target = _target(
        tmp_path,
        {
            "postgres": {"bin_dir": "bin"},
            "backups": {"path": "backups", "format": "custom", "read_timeout_s": 1},
        },
    )
    config = infra_backup.BackupConfig.from_target(load_target(target))
    _dump(tmp_path, "kfm-1.dump", 1, "PGDMP")
    report = infra_backup.assess(config)
    assert [(f.code, f.severity) for f in report.findings] == [(infra_backup.UNVERIFIABLE, "hold")]
    assert "read_timeout_s" in report.findings[0].message


def _record(run: str, ok: bool, file: str = "", **extra: Any) -> dict[str, Any]:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"run": run, "ok": ok, "started": stamp, "finished": stamp, "file": file, **extra}


def test_job_records_are_optional_extra_evidence(tmp_path: Path) -> None:
    import hashlib

    dump = _dump(tmp_path, "kfm-1.sql", 1)
    (tmp_path / "state").mkdir()
    runs = tmp_path / "state/runs.jsonl"
    good = _record(
        "R1", True, "live/backups/kfm-1.sql", sha256=hashlib.sha256(dump.read_bytes()).hexdigest()
    )
    failed = _record(
        "R2", False, error='pg_dump: could not open output file "/mnt/x/a": No such file'
    )
    runs.write_text(json.dumps(good) + "\n{torn\n" + json.dumps(failed) + "\n")
    config = _backup_config(
        tmp_path, job={"runs": "state/runs.jsonl", "latest": "state/LATEST.json"}
    )
    report = infra_backup.assess(config)
    assert report.codes == [infra_backup.LAST_RUN_FAILED]
    failed_finding = next(f for f in report.findings if f.code == infra_backup.LAST_RUN_FAILED)
    assert failed_finding.message.endswith('could not open output file "…": No such file')
    checks = {c.name: c.status for c in infra_backup.verification_checks(config, report, None)}
    assert checks["backup-last-run"] == "FAIL" and checks["backup-freshness"] == "PASS"
    dump.write_bytes(PLAIN.encode() + b"-- changed\n")
    os.utime(dump, (time.time() - 3600,) * 2)
    runs.write_text(json.dumps(good) + "\n")
    (tmp_path / "state/LATEST.json").write_text(json.dumps({"file": "live/backups/gone.sql"}))
    codes = set(infra_backup.assess(config).codes)
    assert codes == {infra_backup.CHECKSUM, infra_backup.FILE_MISSING}
    without = _backup_config(tmp_path)  # the same dumps, no records named: no such check
    names = [
        c.name
        for c in infra_backup.verification_checks(without, infra_backup.assess(without), None)
    ]
    assert "backup-last-run" not in names


def test_taking_a_backup_runs_the_named_command_and_reads_the_new_dump(tmp_path: Path) -> None:
    _dump(tmp_path, "kfm-1.sql", 40)
    script = tmp_path / "job.py"
    script.write_text(
        "import sys, pathlib\n"
        "pathlib.Path('backups', sys.argv[1]).write_text(pathlib.Path(sys.argv[2]).read_text())\n"
    )
    (tmp_path / "good.txt").write_text(PLAIN)
    (tmp_path / "bad.txt").write_text(PLAIN[:40])
    ok = _backup_config(
        tmp_path, job={"run_command": [sys.executable, "job.py", "kfm-2.sql", "good.txt"]}
    )
    result = infra_backup.take_backup(ok)
    assert result["file"] == "kfm-2.sql" and result["exit"] == 0
    assert infra_backup.assess(ok).codes == []
    idle = _backup_config(tmp_path, job={"run_command": [sys.executable, "-c", "pass"]})
    with pytest.raises(RuntimeError, match="no new dump"):
        infra_backup.take_backup(idle)  # exits 0, writes nothing
    bad = _backup_config(
        tmp_path, job={"run_command": [sys.executable, "job.py", "kfm-3.sql", "bad.txt"]}
    )
    with pytest.raises(RuntimeError, match="does not read whole"):
        infra_backup.take_backup(bad)
    failing = _backup_config(
        tmp_path, job={"run_command": [sys.executable, "-c", "raise SystemExit(3)"]}
    )
    with pytest.raises(RuntimeError, match="exited 3"):
        infra_backup.take_backup(failing)
    assert "pg_dump -Fp --file=" in infra_backup.manual_run_instruction(ok)


def test_without_mount_permission_the_volume_is_a_plain_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    info = volumes.mount(tmp_path)
    assert info["mounted"] is False and info["reason"] == "mounting a tmpfs needs root"
    assert (volumes.data_dir(tmp_path) / volumes.EXPORT).is_file()
    assert volumes.unmount(tmp_path) is False and not volumes.data_dir(tmp_path).exists()


def test_a_refused_fault_is_not_recorded_as_on(tmp_path: Path) -> None:
    from kfm_runbooks.sandbox import create_sandbox
    from kfm_runbooks.sandbox.services import faults, supervisor

    folder = create_sandbox(tmp_path / "sandbox").parent
    volumes.data_dir(folder).mkdir(parents=True)  # a plain folder, not the sandbox's own volume
    services = {"api": {"pid": os.getpid()}, "postgres": {}}
    (folder / "live/services.json").write_text(json.dumps(services))
    with pytest.raises(SetupError, match="real disk"):
        supervisor.fault(folder, "disk-pressure", True)
    assert "disk-pressure" not in faults.active(folder)


@pytest.mark.parametrize("kind", hostile.KINDS)
def test_an_installed_certificate_that_is_not_a_small_regular_file_is_held(
    pki: Path, tmp_path: Path, kind: str
) -> None:
    folder = tmp_path / "pki"
    shutil.copytree(pki, folder)
    tls.issue(folder / "ca/ca.crt", folder / "ca/ca.key", folder / "server", days=30)
    shutil.copytree(folder / "server", folder / "served")  # the listener keeps its own copy
    cert = folder / "server/server.crt"
    served = cert.read_bytes()
    server = tls.serve_tls(
        ("127.0.0.1", 0), _Hello, folder / "served/server.crt", folder / "served/server.key"
    )
    try:
        config = _tls_config(folder, server.server_address[1])  # resolves configured paths
        hostile.plant(cert, kind, served, infra_pki.MAX_PEM_BYTES)  # swapped in after
        findings = infra_tls.probe(config).findings
        assert [(f.code, f.severity) for f in findings] == [(infra_tls.INSTALLED_REFUSED, "hold")]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("kind", hostile.KINDS)
def test_backup_records_that_are_not_a_small_regular_file_are_held(
    tmp_path: Path, kind: str
) -> None:
    _dump(tmp_path, "kfm-1.sql", 1)
    (tmp_path / "state").mkdir()
    line = (json.dumps(_record("R1", True, "kfm-1.sql")) + "\n").encode()
    (tmp_path / "state/runs.jsonl").write_bytes(line)
    config = _backup_config(tmp_path, job={"runs": "state/runs.jsonl"})
    assert infra_backup.assess(config).codes == []
    hostile.plant(tmp_path / "state/runs.jsonl", kind, line, infra_backup.MAX_HISTORY_BYTES)
    report = infra_backup.assess(config)
    refused = [f for f in report.findings if f.code == infra_backup.MALFORMED]
    assert [f.severity for f in refused] == ["hold"] and "refused unread" in refused[0].message
    checks = {c.name: c.status for c in infra_backup.verification_checks(config, report, None)}
    assert checks["backup-last-run"] == "HOLD"
