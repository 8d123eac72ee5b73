"""`kfm-runbook sweep`: a health check of everything, N runbooks at a time, read-only.

    kfm-runbook sweep --incident INC [--target T] [--domain D]... [--signal S]... [--jobs N]

Selects the library runbooks whose domain is one of `--domain` and (when given) whose
front matter lists one of `--signal` among its signals, and runs each read-only as an
ordinary `kfm-runbook run` (its own process, kernel and seal: the evidence of a sweep is
exactly the evidence of its runs), `--jobs` at a time (default: the machine's cores).
The workspace lock orders their appends; each run's seal is independent. A progress line
per finished run goes to stderr; the result is one table (runbook, outcome, failing
checks, coverage, seconds). The exit code is the worst of the runs' exit codes.

Everything is checked before the first run starts: the incident, the target, the
selection (an unknown domain, or a selection that matches nothing, is bad input).
Ctrl-C / SIGTERM stops the runs in flight (each seals what it ran as interrupted) and
starts no more.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import runbook as runbook_mod
from .errors import EXIT_BAD_INPUT, InputError
from .recovery import open_for_update
from .target import load_target

MAX_JOBS = 64


@dataclass(frozen=True)
class Selected:
    id: str
    path: Path
    domain: str


@dataclass
class SweepRow:
    runbook: str
    outcome: str
    exit_code: int
    failing: list[str] = field(default_factory=list)  # checks that FAILed or are on HOLD
    coverage: str = ""  # the least-covered check: "examined/in_scope unit"
    seconds: float = 0.0
    run_id: str = ""
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def select(domains: Iterable[str] = (), signals: Iterable[str] = ()) -> list[Selected]:
    """Library runbooks in the domains (all when none) listing one of the signals (any
    when none); unknown domains are bad input naming the known ones."""
    books = [runbook_mod.load(p) for p in runbook_mod.discover()]
    known = sorted({b.id.split("-")[1] for b in books})
    wanted = {d.lower() for d in domains}
    unknown = sorted(wanted - set(known))
    if unknown:
        raise InputError(f"unknown domain {', '.join(unknown)}: the library has {', '.join(known)}")
    asked = {s.lower() for s in signals}
    chosen = []
    for book in books:
        domain = book.id.split("-")[1]
        if wanted and domain not in wanted:
            continue
        listed = {str(s).lower() for s in book.metadata.get("signals") or []}
        if asked and not asked & listed:
            continue
        chosen.append(Selected(book.id, book.path, domain))
    if not chosen:
        raise InputError(
            "no runbook matches this selection: `kfm-runbook list` shows the library, "
            "`kfm-runbook show RBK-…` a runbook's signals"
        )
    return sorted(chosen, key=lambda s: s.id)


def _coverage(checks: list[dict[str, Any]]) -> str:
    """The least-covered check's coverage ('' when no check stated one)."""
    stated = [c["coverage"] for c in checks if isinstance(c.get("coverage"), dict)]
    if not stated:
        return ""

    def ratio(cov: dict[str, Any]) -> float:
        scope = int(cov.get("in_scope") or 0)
        return int(cov.get("examined") or 0) / scope if scope else 1.0

    worst = min(stated, key=ratio)
    return f"{worst.get('examined')}/{worst.get('in_scope')} {worst.get('unit', '')}".strip()


class _Runs:
    """The child processes in flight, so an interrupt can stop them all."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.live: set[subprocess.Popen[bytes]] = set()
        self.stopping = False

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            for child in self.live:
                if child.poll() is None:
                    child.terminate()  # the runner seals what ran as interrupted


def _run_one(
    book: Selected,
    incident_id: str,
    target: Path,
    root: Path | None,
    runs: _Runs,
) -> SweepRow:
    argv = [
        sys.executable,
        "-m",
        "kfm_runbooks",
        "run",
        str(book.path),
        "--incident",
        incident_id,
        "--target",
        str(target),
        "--json",
    ]
    if root is not None:
        argv += ["--root", str(root)]
    start = time.monotonic()
    with runs.lock:
        if runs.stopping:
            return SweepRow(book.id, "not started", 4, detail="the sweep was interrupted")
        child = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ}
        )
        runs.live.add(child)
    out, err = child.communicate()
    with runs.lock:
        runs.live.discard(child)
    seconds = round(time.monotonic() - start, 1)
    try:
        result = json.loads(out.decode())
    except ValueError:
        lines = err.decode(errors="replace").strip().splitlines()
        return SweepRow(
            book.id,
            "bad-input" if child.returncode == EXIT_BAD_INPUT else "no-result",
            child.returncode or 5,
            seconds=seconds,
            detail=lines[-1] if lines else "",
        )
    checks = list(result.get("checks") or [])
    return SweepRow(
        runbook=book.id,
        outcome=str(result.get("outcome")),
        exit_code=int(result.get("exit_code", child.returncode)),
        failing=[str(c["name"]) for c in checks if c.get("status") in ("FAIL", "HOLD")],
        coverage=_coverage(checks),
        seconds=seconds,
        run_id=str(result.get("run_id", "")),
        detail=str(result.get("detail", "")),
    )


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def sweep(
    incident_id: str,
    *,
    target: Path,
    domains: Iterable[str] = (),
    signals: Iterable[str] = (),
    jobs: int | None = None,
    root: Path | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> list[SweepRow]:
    """Run the selection read-only, `jobs` at a time; rows in library order."""
    jobs = default_jobs() if jobs is None else jobs
    if not 1 <= jobs <= MAX_JOBS:
        raise InputError(f"--jobs must be between 1 and {MAX_JOBS}, not {jobs}")
    open_for_update(incident_id, root, "kfm-runbook sweep")  # the incident exists, intact
    load_target(target)  # bad input before any run
    chosen = select(domains, signals)
    progress(f"sweeping {len(chosen)} runbook(s), {jobs} at a time, read-only")
    runs = _Runs()
    rows: dict[str, SweepRow] = {}
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="sweep")
    try:
        futures = {
            pool.submit(_run_one, book, incident_id, target, root, runs): book for book in chosen
        }
        for done, future in enumerate(as_completed(futures), 1):
            row = future.result()
            rows[row.runbook] = row
            failing = f": {', '.join(row.failing)}" if row.failing else ""
            progress(
                f"[{done}/{len(chosen)}] {row.runbook} → {row.outcome}{failing} ({row.seconds:g} s)"
            )
    except BaseException:
        runs.stop()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return [rows[b.id] for b in chosen if b.id in rows]


def worst_exit(rows: list[SweepRow]) -> int:
    return max((r.exit_code for r in rows), default=0)
