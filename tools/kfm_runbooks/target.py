"""The target: a small YAML file describing the system a runbook inspects.

    name: kfm-sandbox            # required, one line
    kind: sandbox                # sandbox | fixture | live (free text, shown in evidence)
    network: deny                # deny (default) | head: may remote assets be probed?
    repo: ../Kansas-Frontier-Matrix   # optional: a KFM checkout; every section defaults
                                 # to KFM's layout inside it (see target_layout.py)
    catalog:                     # one section per kind of system; runbooks ask for theirs
      root: catalog/catalog.json # STAC root catalog (links are walked), or
      items: [catalog/items]     # or folders / files of STAC items
      data_root: catalog         # asset hrefs may not leave this folder (default: the
                                 # root catalog's folder)
      quarantine: quarantine     # a write area (default: .kfm-runbooks/<section>/<key>)

Relative paths resolve against the YAML file's folder, or against `repo` when it is set
(sections then only override KFM's defaults). Every path key a runbook reads is checked
when the target is loaded (`target_layout.KEYS`): a path that does not exist or is of the
wrong kind is bad input naming the key, never a verdict about the data; a write area
inside an incident workspace is refused. A target file over 1 MiB is refused unread.
Imported inside the kernel, so it stays light (PyYAML only).
"""

from __future__ import annotations

import copy
import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import target_layout as layout
from .errors import TargetError

NETWORK_MODES = ("deny", "head")
MAX_TARGET_BYTES = 1_048_576
_REPO_KEYS = ("repo", "root")


@dataclass(frozen=True)
class Target:
    path: Path
    data: dict[str, Any]
    repo: Path | None = None
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)

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
        """Where relative paths resolve: the `repo` checkout, else the YAML's folder."""
        return self.repo if self.repo is not None else self.path.parent

    def _section(self, name: str) -> Any:
        if name in self.sections:
            return self.sections[name]
        return self.data.get(name)

    def section(self, name: str) -> dict[str, Any]:
        value = self._section(name)
        if not isinstance(value, dict):
            hint = (
                f" (repo {self.repo} has none of KFM's default paths for it)"
                if self.repo is not None and name in layout.KFM_LAYOUT
                else ""
            )
            raise TargetError(
                f"target {self.path} has no '{name}' section, which this runbook needs"
                f"{hint}: add one (see `kfm-runbook sandbox create` for an example)"
            )
        return value

    def has(self, name: str) -> bool:
        return isinstance(self._section(name), dict)

    def resolve(self, section: str, key: str, *, required: bool = True) -> Path | None:
        value = layout.get(self.section(section), key)
        if value is None:
            if layout.KEYS.get(section, {}).get(key) == layout.WRITE:
                return self.write_area(section, key)
            if required:
                raise TargetError(f"target {self.path}: '{section}.{key}' is required here")
            return None
        if not isinstance(value, str) or not value:
            raise TargetError(f"target {self.path}: '{section}.{key}' must be a path string")
        return _absolute(self.base, value)

    def resolve_many(self, section: str, key: str) -> list[Path]:
        """A path or a list of paths (empty when absent)."""
        value = layout.get(self.section(section), key)
        if value is None:
            return []
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) and v for v in values):
            raise TargetError(f"target {self.path}: '{section}.{key}' must be path strings")
        return [_absolute(self.base, v) for v in values]

    def write_area(self, section: str, key: str) -> Path:
        """A write area the target names, or its default beside the data (never in it)."""
        value = layout.get(self.section(section), key) if self.has(section) else None
        if isinstance(value, str) and value:
            return _absolute(self.base, value)
        return self.base / layout.WRITE_AREAS / section / key.replace(".", "_")


def _absolute(base: Path, value: str) -> Path:
    """`value` against `base`, made absolute (as every check expects)."""
    return (base / Path(value).expanduser()).resolve()


def _workspace_holding(path: Path) -> Path | None:
    """The incident workspace `path` lies in (a folder with 10_evidence/ledger.jsonl)."""
    for folder in (path, *path.parents):
        if (folder / "10_evidence" / "ledger.jsonl").is_file():
            return folder
    return None


def _check_path(file: Path, where: str, kind: str, value: Any, base: Path) -> None:
    values = value if isinstance(value, list) and kind == layout.PATHS else [value]
    if kind == layout.PATHS and isinstance(value, list) and not value:
        raise TargetError(f"target {file}: '{where}' is an empty list: name a path or drop it")
    for item in values:
        if not isinstance(item, str) or not item.strip():
            raise TargetError(f"target {file}: '{where}' must be a path string, not {item!r}")
        path = _absolute(base, item)
        if kind in (layout.WRITE, layout.STATE):
            workspace = _workspace_holding(path)
            if workspace is not None:
                raise TargetError(
                    f"target {file}: '{where}' ({path}) lies inside incident workspace "
                    f"{workspace.name}: evidence is never a write area; pick a folder outside"
                )
            if path.exists() and not path.is_dir() and not path.is_file():
                raise TargetError(f"target {file}: '{where}' ({path}) is not a file or folder")
            continue
        if not os.path.lexists(path):
            raise TargetError(
                f"target {file}: '{where}' = {item!r} does not exist ({path}): "
                "fix the path or remove the key"
            )
        if kind == layout.FILE and not path.is_file():
            raise TargetError(f"target {file}: '{where}' ({path}) must be a file, not a folder")
        if kind == layout.DIR and not path.is_dir():
            raise TargetError(f"target {file}: '{where}' ({path}) must be a folder, not a file")


def _exists(base: Path, value: Any) -> Any:
    """A layout default kept only where it exists in the checkout (lists filtered)."""
    if isinstance(value, list):
        kept = [v for v in value if not isinstance(v, str) or (base / v).exists()]
        return kept or None
    if isinstance(value, str):
        return value if (base / value).exists() else None
    return value


def _with_defaults(repo: Path, name: str, explicit: Any) -> dict[str, Any] | None:
    """KFM's layout for a section inside `repo`, overridden by the target's own keys."""
    defaults = layout.KFM_LAYOUT.get(name)
    if defaults is None:
        return explicit if isinstance(explicit, dict) else None
    merged: dict[str, Any] = {}
    kinds = layout.KEYS.get(name, {})
    for dotted in _dotted_keys(defaults):
        value = _exists(repo, layout.get(defaults, dotted))
        if value is not None or dotted not in kinds:
            layout.put(merged, dotted, copy.deepcopy(value))
    if not any(layout.get(merged, k) is not None for k in kinds) and not isinstance(explicit, dict):
        return None
    if isinstance(explicit, dict):
        for dotted in _dotted_keys(explicit, kinds):
            layout.put(merged, dotted, copy.deepcopy(layout.get(explicit, dotted)))
    return merged


def _dotted_keys(section: dict[str, Any], kinds: dict[str, str] | None = None) -> list[str]:
    """Keys of a section, dotted where the layout knows nested path keys."""
    known = set(kinds or {}) | {k for s in layout.KEYS.values() for k in s}
    out = []
    for key, value in section.items():
        nested = [k for k in known if k.startswith(f"{key}.")]
        if isinstance(value, dict) and nested:
            out += [f"{key}.{sub}" for sub in value]
        else:
            out.append(key)
    return out


def load_target(path: str | Path) -> Target:
    file = Path(path).expanduser().resolve()
    try:
        size = file.stat().st_size
        if size > MAX_TARGET_BYTES:
            raise TargetError(
                f"target file {file} is {size} bytes, over the {MAX_TARGET_BYTES}-byte limit: "
                "a target describes a system in a few lines; point it at the data instead"
            )
        with file.open("rb") as handle:
            text = handle.read(MAX_TARGET_BYTES + 1).decode("utf-8")
        raw = yaml.safe_load(text)
    except FileNotFoundError as exc:
        raise TargetError(
            f"target file {file} not found: pass --target FILE or create the sandbox "
            "with `kfm-runbook sandbox create DIR`"
        ) from exc
    except IsADirectoryError as exc:
        raise TargetError(f"target file {file} is a folder: pass the YAML file") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise TargetError(f"target file {file} is not valid YAML: {exc}".split("\n")[0]) from exc
    except OSError as exc:
        raise TargetError(f"target file {file} cannot be read: {exc.strerror}") from exc
    if not isinstance(raw, dict):
        raise TargetError(f"target file {file} must be a YAML mapping with at least 'name'")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or "\n" in name:
        raise TargetError(f"target file {file}: 'name' must be a one-line string")
    if raw.get("network", "deny") not in NETWORK_MODES:
        raise TargetError(f"target file {file}: network must be one of {', '.join(NETWORK_MODES)}")
    _check_services(file, raw)
    repo = _repo(file, raw)
    base = repo if repo is not None else file.parent
    sections: dict[str, dict[str, Any]] = {}
    if repo is not None:
        for section in sorted(set(layout.KFM_LAYOUT) | set(layout.KEYS)):
            merged = _with_defaults(repo, section, raw.get(section))
            if merged is not None:
                sections[section] = merged
    for section, kinds in layout.KEYS.items():
        value = sections.get(section, raw.get(section))
        if value is None:
            continue
        if not isinstance(value, dict):
            raise TargetError(f"target file {file}: '{section}' must be a mapping of keys")
        for key, kind in kinds.items():
            found = layout.get(value, key)
            if found is not None:
                _check_path(file, f"{section}.{key}", kind, found, base)
        for key, kind in kinds.items():
            if kind == layout.WRITE and layout.get(value, key) is None:
                _check_path(
                    file,
                    f"{section}.{key} (default)",
                    kind,
                    str(Path(layout.WRITE_AREAS) / section / key),
                    base,
                )
    return Target(file, raw, repo, sections)


# Keys whose value would be a secret itself: a target names where a secret is
# (`<key>_env`, `<key>_file`), never the secret.
SECRET_KEYS = frozenset(
    {"token", "password", "passwd", "secret", "dsn", "api_key", "apikey", "private_key"}
)
URL_SCHEMES = ("http", "https")


def _check_services(file: Path, raw: dict[str, Any]) -> None:
    """Inline secrets, credentials in URLs and a malformed `remote.allow` are bad input."""
    remote = raw.get("remote")
    if remote is not None:
        allow = remote.get("allow") if isinstance(remote, dict) else None
        hosts = allow if isinstance(allow, list) else None
        if hosts is None or not all(
            isinstance(h, str) and h.strip() == h and h and "/" not in h and " " not in h
            for h in hosts
        ):
            raise TargetError(
                f"target file {file}: 'remote' must be {{allow: [host, ...]}} (host names only, "
                "no scheme or path)"
            )

    def walk(value: Any, where: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                dotted = f"{where}.{key}" if where else str(key)
                if str(key).lower() in SECRET_KEYS and isinstance(item, str | int) and item != "":
                    raise TargetError(
                        f"target file {file}: '{dotted}' holds an inline secret: name it by "
                        f"reference instead ({key}_env: VARIABLE or {key}_file: PATH, mode 0600)"
                    )
                if (str(key) == "url" or str(key).endswith("_url")) and item is not None:
                    _check_url(file, dotted, item)
                walk(item, dotted)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{where}[{index}]")

    walk(raw, "")


def _check_url(file: Path, where: str, value: Any) -> None:
    parts = urllib.parse.urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in URL_SCHEMES or not parts.hostname:
        raise TargetError(
            f"target file {file}: '{where}' must be an http(s) URL with a host, not {value!r}"
        )
    if parts.username is not None or parts.password is not None:
        raise TargetError(
            f"target file {file}: '{where}' carries credentials in the URL: remove them and "
            "name a token by reference (api.roles.<role>.token_env / token_file)"
        )


def _repo(file: Path, raw: dict[str, Any]) -> Path | None:
    given = [key for key in _REPO_KEYS if key in raw]
    if not given:
        return None
    if len(given) > 1:
        raise TargetError(f"target file {file}: give 'repo' or 'root', not both")
    key = given[0]
    value = raw[key]
    if not isinstance(value, str) or not value.strip():
        raise TargetError(f"target file {file}: '{key}' must be the path of a KFM checkout")
    repo = Path(os.path.normpath(file.parent / Path(value).expanduser()))
    if not repo.exists():
        raise TargetError(
            f"target file {file}: '{key}' = {value!r} does not exist ({repo}): "
            "point it at a KFM checkout"
        )
    if not repo.is_dir():
        raise TargetError(f"target file {file}: '{key}' ({repo}) must be a folder, not a file")
    return repo.resolve()
