"""The target: a small YAML file describing the system a runbook inspects.

    name: kfm-sandbox            # required, one line
    kind: sandbox                # sandbox | fixture | live (free text, shown in evidence)
    network: deny                # deny (default) | head: may remote assets be probed?
    catalog:                     # one section per kind of system; runbooks ask for theirs
      root: catalog/catalog.json # STAC root catalog (links are walked), or
      items: [catalog/items]     # or folders / files of STAC items
      asset_root: catalog        # relative asset hrefs resolve here, never above it
      quarantine: catalog/quarantine

Relative paths resolve against the YAML file's folder. Imported inside the kernel, so it
stays light (PyYAML only).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import TargetError

NETWORK_MODES = ("deny", "head")


@dataclass(frozen=True)
class Target:
    path: Path
    data: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.data["name"])

    @property
    def kind(self) -> str:
        return str(self.data.get("kind", "unspecified"))

    @property
    def network(self) -> str:
        return str(self.data.get("network", "deny"))

    @property
    def base(self) -> Path:
        return self.path.parent

    def section(self, name: str) -> dict[str, Any]:
        value = self.data.get(name)
        if not isinstance(value, dict):
            raise TargetError(
                f"target {self.path} has no '{name}' section, which this runbook needs: "
                f"add one (see `kfm-runbook sandbox create` for an example)"
            )
        return value

    def has(self, name: str) -> bool:
        return isinstance(self.data.get(name), dict)

    def resolve(self, section: str, key: str, *, required: bool = True) -> Path | None:
        value = self.section(section).get(key)
        if value is None:
            if required:
                raise TargetError(f"target {self.path}: '{section}.{key}' is required here")
            return None
        if not isinstance(value, str) or not value:
            raise TargetError(f"target {self.path}: '{section}.{key}' must be a path string")
        return (self.base / value).resolve()

    def resolve_many(self, section: str, key: str) -> list[Path]:
        """A path or a list of paths (empty when absent)."""
        value = self.section(section).get(key)
        if value is None:
            return []
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) and v for v in values):
            raise TargetError(f"target {self.path}: '{section}.{key}' must be path strings")
        return [(self.base / v).resolve() for v in values]


def load_target(path: str | Path) -> Target:
    file = Path(path).expanduser().resolve()
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise TargetError(
            f"target file {file} not found: pass --target FILE or create the sandbox "
            "with `kfm-runbook sandbox create DIR`"
        ) from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise TargetError(f"target file {file} is not valid YAML: {exc}".split("\n")[0]) from exc
    if not isinstance(raw, dict):
        raise TargetError(f"target file {file} must be a YAML mapping with at least 'name'")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or "\n" in name:
        raise TargetError(f"target file {file}: 'name' must be a one-line string")
    if raw.get("network", "deny") not in NETWORK_MODES:
        raise TargetError(f"target file {file}: network must be one of {', '.join(NETWORK_MODES)}")
    return Target(file, raw)
