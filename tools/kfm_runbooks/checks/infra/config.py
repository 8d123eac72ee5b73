"""Infrastructure runbooks' shared configuration and undo operations.

The target's `infra` section names what the infra runbooks look at (see
`kfm-runbook sandbox create`, part live_infra): the volumes and their thresholds
(`disk`), the TLS endpoint and its certificate files (`tls`), the backup job and its
status records (`backup`); `services` names the live services file (URLs, the DSN).
Checks live in disk.py, tls.py and backup.py (each with its undo
operations, `infra.<op>` in checks/undo.py); this module holds what they share.

Light imports only: used inside kernels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import TargetError
from ...target import Target
from ..common import json as strict_json

MAX_CONFIG_BYTES = 16 << 20  # services / reference JSON: refused unread beyond
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class InfraConfig:
    """The target's `infra` section, with paths resolved against the target's folder."""

    target: Target
    section: dict[str, Any]

    @classmethod
    def from_target(cls, target: Target) -> InfraConfig:
        return cls(target, target.section("infra"))

    @property
    def base(self) -> Path:
        return self.target.base

    def part(self, name: str) -> dict[str, Any]:
        value = self.section.get(name)
        if not isinstance(value, dict):
            raise TargetError(f"target {self.target.path}: 'infra.{name}' must be a mapping")
        return value

    def path(self, value: Any, what: str) -> Path:
        if not isinstance(value, str) or not value:
            raise TargetError(f"target {self.target.path}: '{what}' must be a path string")
        return (self.base / value).resolve()

    def rel(self, path: Path) -> str:
        """A path as the operator reads it: relative to the target's folder when inside."""
        try:
            return str(path.resolve().relative_to(self.base))
        except ValueError:
            return str(path)

    @property
    def allow_remote(self) -> bool:
        live = self.target.data.get("live")
        return bool(self.section.get("allow_remote")) or (
            isinstance(live, dict) and bool(live.get("allow_remote"))
        )

    def services(self) -> dict[str, Any] | None:
        """services.json of the running system, or None when it is not running."""
        name = self.section.get("services")
        if name is None:
            return None
        try:
            value = strict_json.load_file(self.path(name, "infra.services"), MAX_CONFIG_BYTES)
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def reference(self) -> dict[str, Any]:
        name = self.section.get("reference")
        if name is None:
            return {}
        try:
            value = strict_json.load_file(self.path(name, "infra.reference"), MAX_CONFIG_BYTES)
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}
