"""What the infra runbooks share: the target's top-level sections they read, and commands.

The infra runbooks read three top-level sections of a target (see the README, "Pointing
runbooks at production" -> infra): `disk` (volumes and thresholds), `tls` (a list of TLS
endpoints) and `backups` (the folder of dump files and the policy). Everything they reach
goes through `Service` (checks/common/service.py): remote hosts only when `remote.allow`
lists them, every connection noted in the evidence, secrets by reference only. Nothing
here reads the sandbox's files. Checks live in disk.py, tls.py and backup.py; this module
holds what they share: the sections, paths resolved against the target's folder, and
running a command the target names (argv, no shell).

Light imports only: used inside kernels.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import TargetError
from ...target import Target
from ..common.service import Service

OUTPUT_TAIL = 2000  # characters of a command's output kept in the evidence


@dataclass(frozen=True)
class InfraConfig:
    """The target and its `Service`, with the helpers the infra checks share."""

    target: Target
    service: Service = field(compare=False)

    @classmethod
    def from_target(cls, target: Target) -> InfraConfig:
        return cls(target, Service.from_target(target))

    @property
    def base(self) -> Path:
        return self.target.base

    def section(self, name: str) -> dict[str, Any]:
        """A top-level mapping section ({} when absent); anything else is bad input."""
        value = self.target.data.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise TargetError(f"target {self.target.path}: '{name}' must be a mapping of keys")
        return value

    def entries(self, name: str) -> list[dict[str, Any]]:
        """A top-level list section (a single mapping counts as a list of one)."""
        value = self.target.data.get(name)
        if value is None:
            return []
        items = [value] if isinstance(value, dict) else value
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise TargetError(f"target {self.target.path}: '{name}' must be a list of mappings")
        return items

    def path(self, value: Any, what: str) -> Path:
        if not isinstance(value, str) or not value:
            raise TargetError(f"target {self.target.path}: '{what}' must be a path string")
        return (self.base / Path(value).expanduser()).resolve()

    def optional_path(self, part: dict[str, Any], key: str, where: str) -> Path | None:
        value = part.get(key)
        return None if value is None else self.path(value, f"{where}.{key}")

    def rel(self, path: Path) -> str:
        """A path as the operator reads it: relative to the target's folder when inside."""
        try:
            return str(path.resolve().relative_to(self.base.resolve()))
        except ValueError:
            return str(path)


def argv(value: Any, where: str, target: Target) -> list[str] | None:
    """A command the target names: a non-empty list of strings (no shell), or None."""
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(a, str) and a for a in value):
        raise TargetError(
            f"target {target.path}: '{where}' must be a command as a list of arguments "
            "(e.g. [systemctl, start, kfm-backup.service]); no shell string"
        )
    return list(value)


def run_command(
    config: InfraConfig, command: list[str], what: str, timeout: float = 3600
) -> dict[str, Any]:
    """Run a command the target names (cwd: the target's folder); noted as a connection.
    Raises RuntimeError naming the exit status and the end of its error output."""
    started = time.monotonic()
    try:
        done = subprocess.run(
            command,
            cwd=config.base,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        config.service.note_connection("command", command[0], error="not found")
        raise TargetError(f"{what}: command {command[0]!r} not found: fix the target") from exc
    except subprocess.TimeoutExpired as exc:
        config.service.note_connection("command", command[0], error="timeout")
        raise RuntimeError(f"{what}: {command[0]} did not finish within {timeout:g} s") from exc
    seconds = round(time.monotonic() - started, 2)
    config.service.note_connection("command", command[0], status=done.returncode, seconds=seconds)
    result = {
        "command": command,
        "exit": done.returncode,
        "stdout": done.stdout[-OUTPUT_TAIL:],
        "stderr": done.stderr[-OUTPUT_TAIL:],
        "seconds": seconds,
    }
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"{what}: {command[0]} exited {done.returncode}: {last[0]}")
    return result
