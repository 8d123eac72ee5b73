"""The restore drill: a dump restored into a database of its own on a scratch server.

`restore_drill` creates `kfm_restore_drill_<hex>` on the server the scratch DSN names
(the role needs CREATEDB), restores the dump into it (`pg_restore --no-owner
--no-privileges --exit-on-error`, or `psql -v ON_ERROR_STOP=1` for a plain SQL dump), counts
the rows of every restored table, and drops the database again, whatever happened. The
password never appears on a command line (the tools get it through PGPASSWORD); the
connection is noted in the evidence and refused for a remote host `remote.allow` does not
list. psycopg is imported only here, only when a drill runs.
"""

from __future__ import annotations

import gzip
import os
import secrets
import subprocess
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .dumps import last_error

if TYPE_CHECKING:
    from .backup import BackupConfig, Dump


def _pg_env(dsn: str) -> dict[str, str]:
    """Environment for the PostgreSQL tools: the connection from the DSN (the password
    never on a command line), any PG* variables of this process left out."""
    from psycopg.conninfo import conninfo_to_dict

    parts = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    names = {
        "host": "PGHOST",
        "hostaddr": "PGHOSTADDR",
        "port": "PGPORT",
        "user": "PGUSER",
        "password": "PGPASSWORD",
        "sslmode": "PGSSLMODE",
        "sslrootcert": "PGSSLROOTCERT",
        "connect_timeout": "PGCONNECT_TIMEOUT",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update({names[k]: v for k, v in parts.items() if k in names})
    return env


@dataclass
class Drill:
    ok: bool
    database: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    held: bool = False  # could not be attempted (privilege): HOLD, not FAIL

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "database": self.database,
            "counts": self.counts,
            "error": self.error,
            "seconds": self.seconds,
        }


def restore_drill(config: BackupConfig, dump: Dump, dsn: str) -> Drill:
    """Restore into a new database on the scratch server, count rows, drop it (always).
    Connections go through `Service` (remote hosts only when allowed, each one logged)."""
    import psycopg
    from psycopg import sql

    service = config.infra.service
    env = _pg_env(dsn)
    scratch = f"kfm_restore_drill_{secrets.token_hex(4)}"
    started = time.monotonic()
    drill = Drill(ok=False, database=scratch)
    try:
        admin = service.connect_pg(dsn, autocommit=True)
    except psycopg.Error as exc:
        drill.error, drill.held = f"the scratch server does not answer ({type(exc).__name__})", True
        return drill
    with admin:
        try:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
        except psycopg.errors.InsufficientPrivilege:
            drill.error = "the scratch role may not create databases: grant it CREATEDB"
            drill.held = True
            return drill
        try:
            drill.error = _restore_into(config, dump, scratch, env)
            if drill.error is None:
                drill.counts = _count_rows(config, dsn, scratch)
                drill.ok = True
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch))
            )
    drill.seconds = round(time.monotonic() - started, 2)
    return drill


def _restore_into(
    config: BackupConfig, dump: Dump, database: str, env: dict[str, str]
) -> str | None:
    env = {**env, "PGDATABASE": database}
    timeout = config.drill_timeout
    where = f"{env.get('PGHOST', 'localhost')}:{env.get('PGPORT', '5432')}/{database}"
    tool = "psql" if config.format == "plain" else "pg_restore"
    config.infra.service.note_connection("postgres", where, purpose=f"restore drill ({tool})")
    if config.format != "plain":
        done = _run_env(
            [
                config.pg_tool("pg_restore"),
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                f"--dbname={database}",
                str(dump.path),
            ],
            env,
            timeout,
        )
        return None if done.returncode == 0 else last_error(done.stderr)
    psql = [config.pg_tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", database]
    if not dump.compressed:
        done = _run_env([*psql, "-f", str(dump.path)], env, timeout)
    else:
        with gzip.open(dump.path, "rb") as source:
            process = subprocess.Popen(
                psql,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=env,
            )
            assert process.stdin is not None
            try:
                for chunk in iter(lambda: source.read(1 << 20), b""):
                    process.stdin.write(chunk)
            except (BrokenPipeError, EOFError, gzip.BadGzipFile, OSError):
                pass
            finally:
                process.stdin.close()
            _, err = process.communicate(timeout=timeout)
            done = subprocess.CompletedProcess(psql, process.returncode, "", err.decode())
    return None if done.returncode == 0 else last_error(done.stderr)


def _run_env(
    command: list[str], env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def _count_rows(config: BackupConfig, dsn: str, database: str) -> dict[str, int]:
    from psycopg import sql

    counts: dict[str, int] = {}
    with config.infra.service.connect_pg(dsn, dbname=database) as conn:
        rows = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN "
            "('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' "
            "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e') "
            "ORDER BY 1, 2"
        ).fetchall()
        for schema, table in rows:
            found = conn.execute(
                sql.SQL("SELECT count(*) FROM {}.{}").format(
                    sql.Identifier(schema), sql.Identifier(table)
                )
            ).fetchone()
            counts[f"{schema}.{table}"] = int(found[0]) if found else 0
    return counts
