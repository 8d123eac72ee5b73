"""Secrets named by reference in a target: an environment variable or a private file.

A target never holds a secret itself (`load_target` refuses inline ones); it names where
one is: `<what>_env: NAME` (an environment variable) or `<what>_file: PATH` (a regular
file, owner-only: mode 0600 or stricter, not a link). The value is read when a check needs
it and never printed, logged or saved (evidence is scrubbed as well).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from ...errors import TargetError
from .files import FileProblemError, read_regular

MAX_SECRET_BYTES = 64 << 10


def resolve(spec: dict[str, Any], what: str, where: str, base: Path) -> str | None:
    """The secret `what` (token, dsn, password…) of mapping `spec` at key path `where`.

    None when the mapping names neither `<what>_env` nor `<what>_file`; TargetError (one
    line, naming the key and the fix) when it names one that cannot be used.
    """
    env_key, file_key = f"{what}_env", f"{what}_file"
    if env_key in spec and file_key in spec:
        raise TargetError(f"target: '{where}' names both {env_key} and {file_key}: keep one")
    if env_key in spec:
        name = spec[env_key]
        if not isinstance(name, str) or not name:
            raise TargetError(f"target: '{where}.{env_key}' must name an environment variable")
        value = os.environ.get(name)
        if not value:
            raise TargetError(
                f"target: '{where}.{env_key}' names ${name}, which is not set: export it "
                "(the secret stays out of the target and the evidence)"
            )
        return value.strip()
    if file_key in spec:
        name = spec[file_key]
        if not isinstance(name, str) or not name:
            raise TargetError(f"target: '{where}.{file_key}' must be a file path")
        path = Path(os.path.normpath(base.resolve() / Path(name).expanduser()))  # links kept
        return _read_private(path, f"{where}.{file_key}")
    return None


def _read_private(path: Path, where: str) -> str:
    try:
        info = os.lstat(path)
    except FileNotFoundError as exc:
        raise TargetError(
            f"target: '{where}' = {path} does not exist: create it (mode 0600)"
        ) from exc
    except OSError as exc:
        raise TargetError(f"target: '{where}' = {path} cannot be read: {exc.strerror}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise TargetError(f"target: '{where}' = {path} is not a regular file (links are refused)")
    if info.st_mode & 0o077:
        raise TargetError(
            f"target: '{where}' = {path} is readable by others (mode "
            f"{stat.S_IMODE(info.st_mode):04o}): `chmod 600 {path}`"
        )
    try:
        data = read_regular(path, MAX_SECRET_BYTES)
    except (FileProblemError, OSError) as exc:
        raise TargetError(f"target: '{where}' = {path} cannot be read: {exc}") from exc
    try:
        value = data.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise TargetError(f"target: '{where}' = {path} is not UTF-8 text") from exc
    if not value:
        raise TargetError(f"target: '{where}' = {path} is empty: write the secret into it")
    return value
