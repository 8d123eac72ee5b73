"""`10_evidence/hashes.sha256`: the evidence manifest in GNU coreutils format.

One line per evidence file, `<sha256>  <path relative to 10_evidence>`, so that
`cd 10_evidence && sha256sum -c hashes.sha256` verifies the files with no other tool.
Names holding a backslash, newline or carriage return are escaped the GNU way: the line
starts with a backslash and those characters become `\\\\`, `\\n`, `\\r`.
The file only grows; callers append under the workspace lock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ._fs import append_bytes

_LINE_RE = re.compile(r"(\\?)([0-9a-f]{64}) [ *](.*)", re.DOTALL)
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {"\\\\": "\\", "\\n": "\n", "\\r": "\r"}


@dataclass(frozen=True)
class ManifestEntry:
    sha256: str
    name: str  # POSIX path relative to 10_evidence
    line_no: int


class ManifestSyntaxError(ValueError):
    def __init__(self, line_no: int, line: str) -> None:
        super().__init__(f"hashes.sha256 line {line_no} is not a sha256sum line: {line[:80]!r}")
        self.line_no = line_no


def format_line(sha256: str, name: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ValueError(f"not a lowercase hex sha256: {sha256!r}")
    if any(char in name for char in _ESCAPES):
        escaped = "".join(_ESCAPES.get(char, char) for char in name)
        return f"\\{sha256}  {escaped}\n"
    return f"{sha256}  {name}\n"


def _unescape(text: str) -> str:
    return re.sub(r"\\[\\nr]", lambda match: _UNESCAPES[match.group(0)], text)


def parse(text: str) -> list[ManifestEntry]:
    entries: list[ManifestEntry] = []
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line:
            continue
        match = _LINE_RE.fullmatch(line)
        if match is None:
            raise ManifestSyntaxError(line_no, line)
        escaped, digest, name = match.groups()
        entries.append(ManifestEntry(digest, _unescape(name) if escaped else name, line_no))
    return entries


def read(path: Path) -> list[ManifestEntry]:
    if not path.exists():
        return []
    return parse(path.read_text(encoding="utf-8"))


def append(path: Path, entries: list[tuple[str, str]]) -> None:
    """Append `(sha256, name)` lines. Caller holds the workspace lock."""
    if entries:
        append_bytes(path, "".join(format_line(d, n) for d, n in entries).encode("utf-8"))
