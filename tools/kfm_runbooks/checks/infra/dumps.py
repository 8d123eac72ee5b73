"""The dump files in a backup folder, and reading the newest one end to end.

`find_dumps` lists the dumps matching the folder's patterns (in-progress names such as
`.partial` ignored, links never followed), newest first by modification time. `read_whole`
reads one completely: for custom, directory and tar dumps `pg_restore --list` (its table of
contents) and then `pg_restore --file=/dev/null`, which reads every data block — a
truncated custom dump still lists fine, only the full read finds it; a dump newer than this
pg_restore is HOLD (point postgres.bin_dir at the server's version). A plain SQL dump
(`.sql`, or `.sql.gz` read through gzip) is read whole for pg_dump's header, its COPY
blocks and the "dump complete" footer pg_dump writes last: that proves it was not cut
short, not that its statements run (only the restore drill proves that).
"""

from __future__ import annotations

import gzip
import re
import subprocess
import tarfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import TargetError
from .. import HOLD, Finding, verdict

if TYPE_CHECKING:
    from .backup import BackupConfig

NO_BACKUP = "INFRA_BACKUP_NONE"
UNREADABLE = "INFRA_BACKUP_UNREADABLE"
UNVERIFIABLE = "INFRA_BACKUP_UNVERIFIABLE"
IN_PROGRESS_SUFFIXES = (".partial", ".part", ".tmp", ".inprogress")
EDGE_BYTES = 8192  # how much of a plain dump's start and end holds its header / footer
PLAIN_HEADERS = ("-- PostgreSQL database dump", "-- PostgreSQL database cluster dump")
PLAIN_FOOTERS = (
    "-- PostgreSQL database dump complete",
    "-- PostgreSQL database cluster dump complete",
)


def qualified(name: str) -> str:
    return name if "." in name else f"public.{name}"


@dataclass(frozen=True)
class Dump:
    name: str
    path: Path
    mtime: float
    size: int
    directory: bool

    def age_hours(self, now: datetime) -> float:
        return (now.timestamp() - self.mtime) / 3600

    @property
    def compressed(self) -> bool:
        return self.name.endswith(".gz")

    def as_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "file": self.name,
            "modified": datetime.fromtimestamp(self.mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "age_hours": round(self.age_hours(now), 1),
            "bytes": self.size,
        }


def find_dumps(config: BackupConfig) -> tuple[list[Dump], list[str]]:
    """Dumps in the folder, newest first, and the in-progress names that were ignored.
    Links are never followed (a dump that is a link is not counted)."""
    found: dict[str, Dump] = {}
    ignored: list[str] = []
    globs = [*config.patterns, *(p + s for p in config.patterns for s in IN_PROGRESS_SUFFIXES)]
    for pattern in globs:
        for path in sorted(config.folder.glob(pattern)):
            name = path.name
            if name in found or name.startswith(".") or path.is_symlink():
                continue
            if name.endswith(IN_PROGRESS_SUFFIXES):
                ignored.append(name)
                continue
            info = path.lstat()
            if config.format == "directory":
                toc = path / "toc.dat"
                if not path.is_dir() or toc.is_symlink() or not toc.is_file():
                    continue
                size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
                found[name] = Dump(name, path, toc.stat().st_mtime, size, True)
            elif path.is_file():
                found[name] = Dump(name, path, info.st_mtime, info.st_size, False)
    dumps = sorted(found.values(), key=lambda d: (-d.mtime, d.name))
    return dumps, sorted(set(ignored))


@dataclass
class ReadCheck:
    """A whole read of one dump: its table data entries, and what was wrong."""

    dump: str
    findings: list[Finding] = field(default_factory=list)
    toc_tables: list[str] = field(default_factory=list)
    method: str = ""
    subject: str = "newest dump"  # findings name the role, the file name is in the evidence

    @property
    def readable(self) -> bool:
        return not any(f.code == UNREADABLE for f in self.findings)

    @property
    def status(self) -> str:
        return verdict(self.findings)


def last_error(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    line = lines[-1] if lines else "no error output"
    return re.sub(r'"/[^"]*"', '"…"', line).strip()


class ReadTimeoutError(Exception):
    """pg_restore did not finish reading within `backups.read_timeout_s`."""


def _pg_restore(config: BackupConfig, *args: str) -> subprocess.CompletedProcess[str]:
    tool = config.pg_tool("pg_restore")
    try:
        return subprocess.run(
            [tool, *args], capture_output=True, text=True, timeout=config.read_timeout, check=False
        )
    except FileNotFoundError as exc:
        raise TargetError(
            f"pg_restore not found ({tool}): install PostgreSQL's client tools or set "
            "postgres.bin_dir in the target"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise ReadTimeoutError(
            f"pg_restore did not finish within {config.read_timeout:g} s"
        ) from exc


def _tar_problem(path: Path) -> str | None:
    """Read every member of a tar archive to its end (pg_restore can spin forever on a
    truncated tar): None when whole, else what is wrong."""
    try:
        with tarfile.open(path, "r:") as archive:
            for member in archive:
                stream = archive.extractfile(member) if member.isfile() else None
                if stream is not None:
                    while stream.read(1 << 20):
                        pass
    except (tarfile.TarError, OSError, EOFError) as exc:
        return f"the tar archive is damaged or cut short ({exc})"
    return None


def _toc_tables(listing: str) -> list[str]:
    tables = []
    for line in listing.splitlines():
        match = re.search(r"\bTABLE DATA (\S+) (\S+) ", line + " ")
        if match and not line.startswith(";"):
            tables.append(f"{match.group(1)}.{match.group(2)}")
    return sorted(set(tables))


def _open_text(dump: Dump) -> Any:
    if dump.compressed:
        return gzip.open(dump.path, "rt", encoding="utf-8", errors="replace")
    return dump.path.open("r", encoding="utf-8", errors="replace")


def _read_plain(dump: Dump, check: ReadCheck) -> None:
    """Header, COPY blocks and the completion footer of a plain SQL dump, read whole."""
    check.method = "plain SQL read whole: pg_dump's header and 'dump complete' footer"
    head, tail, copies = "", "", set()
    try:
        with _open_text(dump) as stream:
            for line in stream:
                if len(head) < EDGE_BYTES:
                    head += line
                tail = (tail + line)[-EDGE_BYTES:]
                if line.startswith("COPY "):
                    match = re.match(r"COPY (\S+?)\s*\(", line)
                    if match:
                        copies.add(match.group(1).replace('"', ""))
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        check.findings.append(
            Finding(
                UNREADABLE, check.subject, message=f"cannot be read whole: {type(exc).__name__}"
            )
        )
        return
    check.toc_tables = sorted(qualified(t) for t in copies)
    if not any(h in head for h in PLAIN_HEADERS):
        check.findings.append(
            Finding(UNREADABLE, check.subject, message="no pg_dump header: not a plain SQL dump")
        )
    if not any(f in tail for f in PLAIN_FOOTERS):
        check.findings.append(
            Finding(
                UNREADABLE,
                check.subject,
                message="no 'dump complete' footer: the dump stops part-way (truncated or "
                "the dump was interrupted)",
            )
        )


def read_whole(config: BackupConfig, dump: Dump, subject: str = "newest dump") -> ReadCheck:
    """Read the dump end to end (see the module docstring for what each format proves)."""
    check = ReadCheck(dump.name, subject=subject)
    if dump.size == 0:
        check.findings.append(
            Finding(UNREADABLE, check.subject, message="the dump is empty (0 bytes)")
        )
        return check
    if config.format == "plain":
        _read_plain(dump, check)
        return check
    check.method = "pg_restore --list, then pg_restore --file=/dev/null (every data block read)"
    if config.format == "tar":
        problem = _tar_problem(dump.path)
        if problem is not None:
            check.findings.append(Finding(UNREADABLE, check.subject, message=problem))
            return check
    try:
        listing = _pg_restore(config, "--list", str(dump.path))
        if listing.returncode == 0:
            check.toc_tables = _toc_tables(listing.stdout)
            full = _pg_restore(config, "--file=/dev/null", str(dump.path))
            error = None if full.returncode == 0 else last_error(full.stderr)
        else:
            error = last_error(listing.stderr)
    except ReadTimeoutError as exc:
        message = f"{exc}: not judged (raise backups.read_timeout_s for a very large dump)"
        check.findings.append(Finding(UNVERIFIABLE, check.subject, severity=HOLD, message=message))
        return check
    if error is None:
        return check
    version = re.search(r"unsupported version \((\d+)\.\d+", error)
    if version is not None and version.group(1) == "1":  # a real archive, newer than this tool
        check.findings.append(
            Finding(
                UNVERIFIABLE,
                check.subject,
                severity=HOLD,
                message=f"this pg_restore is older than the dump ({error}): point "
                "postgres.bin_dir at the server's version",
            )
        )
    else:
        check.findings.append(
            Finding(UNREADABLE, check.subject, message=f"pg_restore cannot read it whole: {error}")
        )
    return check
