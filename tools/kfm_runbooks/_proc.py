"""Process lifetimes: children that die with the process that started them.

A child started in its own session (`setsid`, `start_new_session=True`) gets no SIGHUP or
SIGTERM when its parent dies, and daemons such as `pg_ctl start` are not even children.
Two mechanisms, both Linux:

- `die_with_parent()` in the child: the kernel sends `signal` when the parent thread dies
  (`prctl(PR_SET_PDEATHSIG)`); checked against the parent's identity afterwards, because
  the parent may already be gone before the call.
- `guarded(cmd)`: the same for a child we do not start ourselves (a kernel that
  jupyter_client launches): the command is run through `python -m kfm_runbooks._proc`,
  which sets the parent-death signal and then execs it (the setting survives exec).
- `ProcessRef` + `watch(...)`: identify a process by (pid, start time) so a recycled pid is
  never mistaken for it, and wait until it is gone. The sandbox's keeper
  (`live/keeper.py`) uses it to stop services whose owner died, whatever their parentage;
  recovery uses `owner_state` to tell a run in progress from one whose runner died.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ProcessRef:
    """A process, by pid and kernel start time (clock ticks since boot)."""

    pid: int
    start: int

    @classmethod
    def of(cls, pid: int) -> ProcessRef | None:
        start = start_time(pid)
        return None if start is None else cls(pid, start)

    @classmethod
    def parse(cls, text: str) -> ProcessRef:
        """`"PID:START"` (see `__str__`); ValueError on anything else."""
        pid, _, start = text.partition(":")
        return cls(int(pid), int(start))

    def __str__(self) -> str:
        return f"{self.pid}:{self.start}"

    def alive(self) -> bool:
        """True while this very process exists (a zombie counts as gone)."""
        return start_time(self.pid) == self.start and not _zombie(self.pid)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes().decode()
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: split after its last ')'.
    return raw[raw.rfind(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks), None if no such process."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def _zombie(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and bool(fields) and fields[0] in ("Z", "X")


def die_with_parent(sig: int = signal.SIGTERM, parent: int | None = None) -> None:
    """Ask Linux to send `sig` to this process when its parent dies.

    `parent` is the pid the caller expects as parent (default: the current one); if it is
    already gone (we were re-parented), the signal is raised at once. No-op off Linux.
    """
    expected = os.getppid() if parent is None else parent
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != expected:
        os.kill(os.getpid(), sig)


def watch(ref: ProcessRef, interval: float = 0.25) -> None:
    """Block until `ref` is gone."""
    while ref.alive():
        time.sleep(interval)


def host() -> str:
    """This machine's name, as recorded beside a ProcessRef (pids mean nothing elsewhere)."""
    import socket

    return socket.gethostname()


def owner_state(ref: str | None, on_host: str | None) -> str:
    """'alive', 'dead' or 'unknown' (recorded on another machine, or unreadable) for a
    process recorded as `ProcessRef` text on `on_host`."""
    if not ref or on_host != host():
        return "unknown"
    try:
        process = ProcessRef.parse(ref)
    except ValueError:
        return "unknown"
    return "alive" if process.alive() else "dead"


def guarded(cmd: list[str], parent: int | None = None) -> list[str]:
    """`cmd`, wrapped so that the process it becomes is SIGKILLed when `parent` (default:
    this process) dies."""
    owner = os.getpid() if parent is None else parent
    return [sys.executable, "-m", "kfm_runbooks._proc", str(owner), "--", *cmd]


def _exec_guarded(argv: list[str]) -> None:
    """`PARENT -- CMD...`: die with PARENT, then become CMD."""
    if len(argv) < 3 or argv[1] != "--":
        raise SystemExit("usage: python -m kfm_runbooks._proc PARENT_PID -- COMMAND...")
    die_with_parent(signal.SIGKILL, int(argv[0]))
    os.execvp(argv[2], argv[2:])  # noqa: S606 - the command jupyter_client would have run


def kill_group(pid: int) -> None:
    """SIGKILL a process group (gone or not ours: nothing to do)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def read_process(path: Path) -> ProcessRef | None:
    """The process a pid file names (`PID:START`, or a bare pid from an older version)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    try:
        return ProcessRef.parse(text) if ":" in text else ProcessRef.of(int(text))
    except ValueError:
        return None


if __name__ == "__main__":
    _exec_guarded(sys.argv[1:])
