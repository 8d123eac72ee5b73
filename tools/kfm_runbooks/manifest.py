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

from ._fs import append_bytes, read_regular

_LINE_RE = re.compile(r"(\\?)([0-9a-f]{64}) [ *](.*)", re.DOTALL)
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {"\\\\": "\\", "\\n": "\n", "\\r": "\r"}


@dataclass(frozen=True)
class ManifestEntry:
    sha256: str
    name: str  # POSIX path relative to 10_evidence
    line_no: int


class ManifestSyntaxError(ValueError):
    def __init__(self, line_no: int, line: str, why: str = "") -> None:
        what = why or f"is not a sha256sum line: {line[:80]!r}"
        super().__init__(f"hashes.sha256 line {line_no} {what}")
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


def parse(text: str | bytes) -> list[ManifestEntry]:
    """Every line; ManifestSyntaxError naming the first bad one (bytes: also non-UTF-8)."""
    entries: list[ManifestEntry] = []
    if isinstance(text, str):
        text = text.encode("utf-8")
    raw_lines = text.split(b"\n")
    if raw_lines and raw_lines[-1] != b"":
        raise ManifestSyntaxError(len(raw_lines), "", "is incomplete (no newline): torn write")
    for line_no, item in enumerate(raw_lines, start=1):
        try:
            line = item.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ManifestSyntaxError(line_no, "", "is not UTF-8 (edited or corrupted)") from exc
        if not line:
            continue
        match = _LINE_RE.fullmatch(line)
        if match is None:
            raise ManifestSyntaxError(line_no, line)
        escaped, digest, name = match.groups()
        entries.append(ManifestEntry(digest, _unescape(name) if escaped else name, line_no))
    return entries


def read(path: Path) -> list[ManifestEntry]:
    """The manifest's entries ([] when absent); NotRegularError for a link or FIFO."""
    try:
        return parse(read_regular(path))
    except FileNotFoundError:
        return []


def append(path: Path, entries: list[tuple[str, str]]) -> None:
    """Append `(sha256, name)` lines. Caller holds the workspace lock."""
    if entries:
        append_bytes(path, "".join(format_line(d, n) for d, n in entries).encode("utf-8"))
