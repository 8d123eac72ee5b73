"""A private PostgreSQL + PostGIS cluster for the live sandbox (Debian's packages).

`start()` creates a throw-away cluster in a fresh folder (owned by the `postgres` user when
we run as root: PostgreSQL refuses to run as root), listening on 127.0.0.1 only, with
`pg_stat_statements` preloaded, and loads KFM-like spatial tables (counties, observation
points) with their indexes. `stop()` stops it and removes the folder. Nothing else on the
machine is touched: Debian's own cluster (port 5432) is neither used nor started.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..._fs import file_lock, sha256_bytes
from ...errors import SetupError

DATABASE = "kfm"
USER = "kfm"
HINT = "install Debian's postgresql and postgresql-15-postgis-3 (`make services`)"


@dataclass(frozen=True)
class Cluster:
    folder: Path
    port: int
    bin_dir: Path

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} dbname={DATABASE} user={USER}"


def bin_dir() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), reverse=True)
    if not candidates:
        found = shutil.which("pg_ctl")
        if found is None:
            raise SetupError(f"PostgreSQL is not installed: {HINT}")
        return Path(found).parent
    return candidates[0].parent


def _as_owner(argv: list[str]) -> list[str]:
    """PostgreSQL refuses root: run its tools as `postgres` when we are root."""
    if os.geteuid() != 0:
        return argv
    if shutil.which("runuser") is None:
        raise SetupError("running as root needs `runuser` to start PostgreSQL as postgres")
    return ["runuser", "-u", "postgres", "--", *argv]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run(argv: list[str], what: str, timeout: float = 120) -> str:
    result = subprocess.run(_as_owner(argv), capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SetupError(f"PostgreSQL {what} failed: {detail[0]}")
    return result.stdout


SCHEMA_SQL = """
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
CREATE TABLE counties (
  id integer PRIMARY KEY,
  name text NOT NULL,
  geom geometry(Polygon, 4326) NOT NULL
);
-- 105 Kansas-like counties on a 15 x 7 grid of 0.5 degree cells
INSERT INTO counties
SELECT i, 'County ' || lpad(i::text, 3, '0'),
       ST_MakeEnvelope(-102.0 + (i % 15) * 0.5, 37.0 + (i / 15) * 0.5,
                       -101.5 + (i % 15) * 0.5, 37.5 + (i / 15) * 0.5, 4326)
FROM generate_series(0, 104) AS i;
CREATE TABLE observations (
  id bigint PRIMARY KEY,
  county_id integer NOT NULL REFERENCES counties (id),
  observed_at timestamptz NOT NULL,
  value double precision NOT NULL,
  geom geometry(Point, 4326) NOT NULL
);
-- 200k deterministic points (no random(): the same data on every machine)
INSERT INTO observations
SELECT n, (n % 105),
       timestamptz '2026-01-01 00:00:00+00' + (n % 8760) * interval '1 hour',
       ((n * 7919) % 1000) / 10.0,
       ST_SetSRID(ST_MakePoint(-102.0 + ((n * 37) % 7500) / 1000.0,
                               37.0 + ((n * 91) % 3500) / 1000.0), 4326)
FROM generate_series(1, 200000) AS n;
CREATE INDEX observations_geom_idx ON observations USING gist (geom);
CREATE INDEX observations_observed_at_idx ON observations (observed_at);
CREATE INDEX counties_geom_idx ON counties USING gist (geom);
ANALYZE;
"""


def plan(parent: Path | None = None) -> Cluster:
    """Choose a fresh folder, a free port and the binaries for a cluster, without starting
    it: a caller records these first, so whoever cleans up later knows what to stop."""
    binaries = bin_dir()
    folder = Path(tempfile.mkdtemp(prefix="kfm-pg-", dir=parent))
    folder.chmod(0o700)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    return Cluster(folder, _free_port(), binaries)


def _conf(port: int) -> str:
    return (
        "listen_addresses = '127.0.0.1'\n"
        f"port = {port}\n"
        "unix_socket_directories = ''\n"
        "shared_preload_libraries = 'pg_stat_statements'\n"
        "pg_stat_statements.track = all\n"
        "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
        "max_connections = 40\nlogging_collector = off\n"
    )


def _pg_ctl(cluster: Cluster, action: str) -> None:
    data = cluster.folder / "data"
    log = ["-l", str(cluster.folder / "server.log")] if action == "start" else ["-m", "fast"]
    _run([str(cluster.bin_dir / "pg_ctl"), "-D", str(data), *log, "-w", "-t", "60", action], action)


def _initdb_and_load(cluster: Cluster) -> None:
    """initdb, start, create and load the database: the slow way (~8 s)."""
    binaries, port, data = cluster.bin_dir, cluster.port, cluster.folder / "data"
    _run(
        [
            str(binaries / "initdb"),
            "-D",
            str(data),
            "-U",
            USER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ],
        "initdb",
    )
    with (data / "postgresql.conf").open("a", encoding="utf-8") as out:
        out.write(_conf(port))
    _pg_ctl(cluster, "start")
    _run(
        [str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", USER, DATABASE],
        "createdb",
    )
    _run(
        [
            str(binaries / "psql"),
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            USER,
            "-d",
            DATABASE,
            "-c",
            SCHEMA_SQL,
        ],
        "schema load",
        300,
    )


# -- the template: one loaded cluster per machine, copied for every start ----------------


def _owner_uid() -> int:
    """Who owns cluster files: `postgres` when we are root (it refuses root), else us."""
    if os.geteuid() != 0:
        return os.geteuid()
    import pwd

    return pwd.getpwnam("postgres").pw_uid


def template_dir(binaries: Path) -> Path:
    """Where this machine keeps the loaded template for these binaries and this schema."""
    key = sha256_bytes(f"{binaries}\n{_conf(0)}\n{SCHEMA_SQL}".encode())[:16]
    return Path(tempfile.gettempdir()) / f"kfm-pg-template-{key}-{_owner_uid()}"


def _usable(template: Path) -> bool:
    """Ready, and nobody else's: a folder someone else planted in /tmp is never used."""
    try:
        info = template.lstat()
        ready = (template / "READY").lstat()
    except OSError:
        return False
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == _owner_uid()
        and info.st_mode & 0o077 == 0
        and stat.S_ISREG(ready.st_mode)
        and ready.st_uid == _owner_uid()
    )


def template(binaries: Path) -> Path | None:
    """The loaded template's folder (built once, under a lock; ~8 s the first time), or
    None when it cannot be built or trusted here (then every start loads from scratch)."""
    folder = template_dir(binaries)
    if _usable(folder):
        return folder
    try:
        with file_lock(folder.with_name(folder.name + ".lock"), timeout=600):
            if _usable(folder):
                return folder
            build = plan()
            try:
                _initdb_and_load(build)
                _pg_ctl(build, "stop")  # a clean shutdown: the copy starts without recovery
                ready = build.folder / "READY"
                ready.write_text("loaded\n")
                if os.geteuid() == 0:
                    shutil.chown(ready, "postgres", "postgres")
                (build.folder / "server.log").unlink(missing_ok=True)
                shutil.rmtree(folder, ignore_errors=True)
                build.folder.rename(folder)
            except BaseException:
                stop(build)
                raise
    except (SetupError, OSError):
        return None
    return folder if _usable(folder) else None


def _copy_template(source: Path, cluster: Cluster) -> None:
    data = cluster.folder / "data"
    _run(["cp", "-a", str(source / "data"), str(data)], "template copy")
    conf = data / "postgresql.conf"
    with conf.open("a", encoding="utf-8") as out:  # later lines win: this cluster's port
        out.write(f"port = {cluster.port}\n")


def start(planned: Cluster | None = None, *, use_template: bool = True) -> Cluster:
    """Start a fresh, loaded cluster; SetupError with the fix when it cannot.

    The data comes from a copy of this machine's template (built once, same bytes as a
    fresh load: same schema, rows, indexes and statistics), else from initdb + load.
    """
    cluster = planned or plan()
    try:
        source = template(cluster.bin_dir) if use_template else None
        if source is None:
            _initdb_and_load(cluster)
        else:
            _copy_template(source, cluster)
            _pg_ctl(cluster, "start")
        return cluster
    except BaseException:
        stop(cluster)
        raise


def stop(cluster: Cluster) -> None:
    """Stop the cluster (fast shutdown) and delete its folder. Safe to call twice."""
    data = cluster.folder / "data"
    if (data / "postmaster.pid").exists():
        subprocess.run(
            _as_owner(
                [
                    str(cluster.bin_dir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    "30",
                    "stop",
                ]
            ),
            capture_output=True,
            timeout=60,
        )
    for _ in range(50):
        if not (data / "postmaster.pid").exists():
            break
        time.sleep(0.1)
    shutil.rmtree(cluster.folder, ignore_errors=True)
