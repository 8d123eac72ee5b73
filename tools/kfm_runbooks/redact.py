"""The one scrubber: secrets are removed at every door into evidence, before hashing.

    clean(value, counts=None)   the entry point every writer calls: text, bytes, a JSON-like
                                tree (ledger entry data, parameters, an incident record) or
                                a whole notebook; returns the same kind of value
    scrub(text) / find(text)    the patterns themselves (lint and the secrets checks use them)

Doors (each calls `clean` once, just before it hashes or writes): the ledger (`ledger.append`,
so every entry: findings, checks, actions, parameters, notes, and the view texts an entry
appends to the timeline and the .md records), sealed notebooks, target copies,
PROV and torn partials (`seal.seal_notebook`), saved evidence (`record.save_evidence`),
incident.yaml (`workspace`, `lifecycle`), comms updates, the postmortem and the report.
Bundles carry only what those doors wrote (unsealed working copies and partial writes stay
out). A redaction is `[REDACTED:<pattern>]`; counts per pattern (never values) are recorded.

Strings are scrubbed whole, never line by line: nbformat writes sources and outputs as lists
of lines, where a multi-line key would no longer match, so notebooks are cleaned as trees of
joined strings (adjacent stream chunks merged first) and only then serialised.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
MARKER = "[REDACTED:"
_NOT_REDACTED = r"(?!\[REDACTED:)"


# Values that point at a secret instead of being one (kms://..., ${VAR}, $VAR, arn:...).
REFERENCE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|\$\{|\{\{|\$[A-Z_]|arn:|env:|ref:|vault:)", re.I)


def _reference(secret: str) -> bool:
    return bool(REFERENCE.match(secret.strip("'\"")))


def _named_value(secret: str) -> bool:
    """Keep a value found only by its name when it is a reference or prose, not a secret."""
    return _reference(secret) or bool(re.search(r"\s", secret.strip("'\"")))


@dataclass(frozen=True)
class Trigger:
    """Literal words one of which every match contains (found with str.find: fast)."""

    words: tuple[str, ...]
    ignore_case: bool = False

    def spans(self, text: str, lowered: str | None) -> list[tuple[int, int]] | None:
        """Sorted (start, end) of every occurrence; None when it cannot tell (a text whose
        lower-case form has another length)."""
        haystack = text
        if self.ignore_case:
            if lowered is None or len(lowered) != len(text):
                return None
            haystack = lowered
        found = []
        for word in self.words:
            position = haystack.find(word)
            while position >= 0:
                found.append((position, position + len(word)))
                position = haystack.find(word, position + 1)
        return sorted(found)


def _words(*words: str, ignore_case: bool = False) -> Trigger:
    return Trigger(tuple(w.lower() if ignore_case else w for w in words), ignore_case)


@dataclass(frozen=True)
class Pattern:
    name: str
    regex: re.Pattern[str]
    group: int = 0  # which group is the secret (0: the whole match)
    keep: Callable[[str], bool] | None = None  # a match this says True to is not a secret
    # Found in every match (a keyword, a prefix): in a large text the pattern runs only on
    # the lines around its trigger (`_windows`). None: the pattern always scans everything.
    trigger: Trigger | None = None


# Names of fields and variables that hold a secret (db_password, PGPASSWORD, API-Key...),
# but not those about one (credential_ref, token_id, secret_kind, password_expires...).
_SENSITIVE_WORD = (
    r"(?:password|passwd|passphrase|pwd|secret|token|api[_-]?key|apikey|access[_-]?key"
    r"|private[_-]?key|credentials?)"
)
_ABOUT = (
    r"(?:ref|refs|id|ids|fp|fingerprint|kind|kinds|type|types|name|names|count|max|min|path"
    r"|file|env|var|hint|url|uri|endpoint|expiry|expires|expired|ttl|len|length|source"
    r"|rotated|status|scope|scopes|marker|markers|persisted|redacted|exposed)"
)
_SECRET_NAME = (
    rf"[A-Za-z0-9_-]*?(?i:{_SENSITIVE_WORD})(?:[_-](?!(?i:{_ABOUT})(?![A-Za-z0-9]))[A-Za-z0-9]+)*"
)
SECRET_FIELD = re.compile(_SECRET_NAME)
# Literal parts of _SENSITIVE_WORD (each of its alternatives contains one of these).
_SENSITIVE = _words(
    "passw",  # password, passwd
    "passphrase",
    "pwd",
    "secret",
    "token",
    *(f"{word}{gap}key" for word in ("api", "access", "private") for gap in ("", "_", "-")),
    "credential",
    ignore_case=True,
)
# One line of a PEM / PGP armour body after a real or an escaped newline: base64 to the end
# of the line, or a `Header: value` line (Proc-Type, Version...), or empty.
_ARMOUR_LINE = (
    r"(?:\r?\n|(?:\\r)?\\n)[ \t]*"
    r"(?:[A-Za-z0-9+/=]+(?=[\r\n'\"\\]|$)|[A-Z][A-Za-z0-9-]*: [^\n\\]*)?"
)


def _armour(label: str) -> re.Pattern[str]:
    """A BEGIN line up to its END line or, for a key cut short, to the end of its body."""
    end = rf"-----END {label}-----"
    return re.compile(rf"-----BEGIN {label}-----(?:[\s\S]*?{end}|(?:{_ARMOUR_LINE})*)")


PATTERNS: tuple[Pattern, ...] = (
    Pattern("pgp-private-key", _armour(r"PGP PRIVATE KEY BLOCK")),
    Pattern("private-key", _armour(r"(?!PGP )(?:[A-Z0-9]+ )*PRIVATE KEY")),
    Pattern(
        "aws-access-key-id",
        re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
        trigger=_words("AKIA", "ASIA"),
    ),
    Pattern(
        "aws-secret-access-key",
        re.compile(r"(?i)aws_secret_access_key\s*[:=]\s*['\"]?([A-Za-z0-9/+=]{40})"),
        1,
        trigger=_words("aws_secret_access_key", ignore_case=True),
    ),
    Pattern(
        "github-token",
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b"),
        trigger=_words("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    Pattern(
        "slack-token",
        re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
        trigger=_words("xoxa-", "xoxb-", "xoxp-", "xoxr-", "xoxs-"),
    ),
    Pattern(
        "google-api-key",
        re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
        trigger=_words("AIza"),
    ),
    Pattern(
        "stripe-key",
        re.compile(r"\b[sr]k_live_[0-9a-zA-Z]{24,}\b"),
        trigger=_words("k_live_"),
    ),
    Pattern(
        "jwt",
        re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"),
        trigger=_words("eyJ"),
    ),
    # scheme://user:password@host - the password may hold "@": it ends at the last "@"
    # before the host (the authority ends at "/", whitespace or a quote).
    Pattern(
        "url-credentials",
        re.compile(rf"\b[a-z][a-z0-9+.-]*://[^/\s:@'\"<>]+:{_NOT_REDACTED}([^\s/'\"<>]+)@"),
        1,
        trigger=_words("://"),
    ),
    Pattern(
        "basic-auth",
        re.compile(
            rf"(?i)\bauthorization\b['\"]?\s*[:=]\s*['\"]?basic\s+{_NOT_REDACTED}"
            r"([A-Za-z0-9+/_-]+=*)"
        ),
        1,
        trigger=_words("authorization", ignore_case=True),
    ),
    # "password": "...", 'api_key': '...' (JSON, Python reprs), also escaped inside a
    # string (\"password\": \"...\"): each quote is matched at its own escape level.
    Pattern(
        "assigned-secret",
        re.compile(
            rf"""(\\*['"]){_SECRET_NAME}\1\s*:\s*"""
            rf"""(\\*['"]){_NOT_REDACTED}((?:(?!\2)(?:\\.|[^\\\n]))+)\2"""
        ),
        3,
        _named_value,
        trigger=_SENSITIVE,
    ),
    # password = "...", db_password: '...' (code, configs)
    Pattern(
        "assigned-secret",
        re.compile(
            rf"(?<![A-Za-z0-9_-]){_SECRET_NAME}\s*[:=]\s*['\"]{_NOT_REDACTED}([^'\"\s]{{4,}})['\"]"
        ),
        1,
        _reference,
        trigger=_SENSITIVE,
    ),
    # PGPASSWORD=..., API_TOKEN='...', ?client_secret=...& (env files, shells, query strings)
    Pattern(
        "assigned-secret",
        re.compile(
            rf"(?<![A-Za-z0-9_-]){_SECRET_NAME}={_NOT_REDACTED}"
            r"(\"[^\"\n]+\"|'[^'\n]+'|[^\s'\"&;,)]+)"
        ),
        1,
        _reference,
        trigger=_SENSITIVE,
    ),
    # password: value (YAML, headers, logs), one line
    Pattern(
        "assigned-secret",
        re.compile(
            rf"(?m)^[ \t-]*{_SECRET_NAME}[ \t]*:[ \t]+{_NOT_REDACTED}([^\s'\"#{{\[][^\n#]*?)[ \t]*$"
        ),
        1,
        _named_value,
        trigger=_SENSITIVE,
    ),
    # curl -u user:password, --password=...
    Pattern(
        "cli-credentials",
        re.compile(rf"(?<!\S)(?:-u|--user)[ =]['\"]?[^\s:'\"]+:{_NOT_REDACTED}([^\s'\"]+)"),
        1,
        trigger=_words("-u", "--user"),
    ),
    Pattern(
        "cli-credentials",
        re.compile(rf"(?<!\S)--(?:[a-z0-9]+-)*(?i:{_SENSITIVE_WORD})[ =]{_NOT_REDACTED}(?!-)(\S+)"),
        1,
        trigger=_SENSITIVE,
    ),
    Pattern(
        "bearer-token",
        re.compile(r"(?i)\bbearer\s+([A-Za-z0-9._~+/-]{20,}=*)"),
        trigger=_words("bearer", ignore_case=True),
    ),
)

# Output MIME types that are base64 binaries, not text: never scrubbed (no match is
# meaningful there and a replacement would corrupt the image).
BINARY_MIME = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf"})


def find(text: str) -> list[tuple[str, int, int]]:
    """(pattern name, start, end) of each secret in `text`, in order, never overlapping: at
    one position the widest match wins, and on a tie the pattern listed first (the specific
    before the generic: a GitHub token assigned to `token = ...` is a github-token)."""
    spans = []
    windows = _Windows(text)
    for rank, pattern in enumerate(PATTERNS):
        for match in windows.matches(pattern):
            start, end = match.start(pattern.group), match.end(pattern.group)
            if pattern.keep is not None and pattern.keep(text[start:end]):
                continue
            if end > start:
                spans.append((start, -end, rank, pattern.name))
    found: list[tuple[str, int, int]] = []
    position = 0
    for start, negative_end, _rank, name in sorted(spans):
        if start >= position:  # else inside a wider match already taken
            found.append((name, start, -negative_end))
            position = -negative_end
    return found


# Texts at least this long are scanned window by window (a large log, a query result).
WINDOWED_FROM = 64 << 10
_CONTEXT_LINES = 2  # lines kept on each side of a trigger (a value on the next line)


class _Windows:
    """Where each pattern is searched in one text: all of it, or in a large text only the
    lines around its trigger. Every match contains its trigger and crosses at most
    `_CONTEXT_LINES` line ends, and a window is whole lines, so nothing is cut in two."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.large = len(text) >= WINDOWED_FROM
        self._lowered: str | None = None
        self._by_trigger: dict[Trigger, list[tuple[int, int]] | None] = {}

    def matches(self, pattern: Pattern) -> Iterator[re.Match[str]]:
        windows = None
        if self.large and pattern.trigger is not None:
            windows = self._for(pattern.trigger)
        if windows is None:
            yield from pattern.regex.finditer(self.text)
            return
        for start, end in windows:
            yield from pattern.regex.finditer(self.text, start, end)

    def _for(self, trigger: Trigger) -> list[tuple[int, int]] | None:
        if trigger not in self._by_trigger:
            if trigger.ignore_case and self._lowered is None:
                self._lowered = self.text.lower()
            spans = trigger.spans(self.text, self._lowered)
            self._by_trigger[trigger] = None if spans is None else _windows(spans, self.text)
        return self._by_trigger[trigger]


def _windows(triggers: list[tuple[int, int]], text: str) -> list[tuple[int, int]] | None:
    """Merged [start, end) line ranges around each trigger; None when they would cover
    most of the text anyway (then one plain scan is quicker).

    Every search is bounded by the previous window, so the work stays linear in the text
    even for thousands of triggers on one very long line."""
    windows: list[tuple[int, int]] = []
    covered = 0
    ends: list[int] = []  # the line ends after the newest trigger (the window's last lines)
    for found_start, found_end in triggers:
        floor = windows[-1][1] if windows else 0
        if windows and found_start < floor:
            start = windows[-1][0]
            ends = [e for e in ends if e >= found_end]
        else:
            start = found_start
            for step in range(_CONTEXT_LINES + 1):  # the trigger's line, then those before
                if start <= floor:
                    break
                start = text.rfind("\n", floor, start - 1 if step else start) + 1 or floor
            ends = []
        position = ends[-1] + 1 if ends else found_end
        while len(ends) <= _CONTEXT_LINES and position <= len(text):
            newline = text.find("\n", position)
            ends.append(len(text) if newline < 0 else newline)
            position = len(text) + 1 if newline < 0 else newline + 1
        end = ends[-1]
        if windows and start <= floor:
            covered -= floor - windows[-1][0]
            start = windows.pop()[0]
        windows.append((start, end))
        covered += end - start
        if covered * 2 > len(text):
            return None
    return windows


def scrub(text: str) -> tuple[str, Counter[str]]:
    counts: Counter[str] = Counter()
    out: list[str] = []
    position = 0
    for name, start, end in find(text):
        out.append(text[position:start])
        out.append(f"{MARKER}{name}]")
        position = end
        counts[name] += 1
    out.append(text[position:])
    return "".join(out), counts


def clean(value: T, counts: Counter[str] | None = None) -> T:
    """`value` with every secret replaced by a marker; counts per pattern into `counts`.

    Text and bytes (any bytes: undecodable ones pass through unchanged) are scrubbed whole;
    in a tree (dicts, lists, a notebook) every string, every key, and every value of a field
    named like a secret (`db_password`, `api_key`...) is. Idempotent.
    """
    tally: Counter[str] = Counter() if counts is None else counts
    return _clean(value, tally)  # type: ignore[no-any-return]


def _clean(value: Any, counts: Counter[str]) -> Any:
    if isinstance(value, str):
        text, found = scrub(value)
        counts.update(found)
        return text
    if isinstance(value, bytes):
        return _clean(value.decode("utf-8", "surrogateescape"), counts).encode(
            "utf-8", "surrogateescape"
        )
    if isinstance(value, list | tuple):
        return [_clean(item, counts) for item in value]
    if isinstance(value, dict):
        if value.get("cell_type") == "code" and isinstance(value.get("outputs"), list):
            value = type(value)({**value, "outputs": _merge_streams(value["outputs"])})
        out = type(value)()
        for key, item in value.items():
            new_key = _clean(key, counts) if isinstance(key, str) else key
            while new_key in out:  # two keys scrubbed to the same marker: keep both
                new_key = f"{new_key}'"
            out[new_key] = _clean_field(key, item, counts)
        return out
    return value


def _clean_field(key: Any, item: Any, counts: Counter[str]) -> Any:
    if not isinstance(key, str) or not isinstance(item, str):
        return _clean(item, counts)
    if key in BINARY_MIME:
        return item
    if (
        item
        and not item.startswith(MARKER)
        and not _reference(item)
        and SECRET_FIELD.fullmatch(key)
    ):
        counts["assigned-secret"] += 1
        return f"{MARKER}assigned-secret]"
    return _clean(item, counts)


def _merge_streams(outputs: list[Any]) -> list[Any]:
    """Adjacent chunks of one stream as one output (a key printed in two writes)."""
    merged: list[Any] = []
    for output in outputs:
        previous = merged[-1] if merged else None
        if (
            isinstance(output, dict)
            and isinstance(previous, dict)
            and output.get("output_type") == previous.get("output_type") == "stream"
            and output.get("name") == previous.get("name")
            and isinstance(output.get("text"), str)
            and isinstance(previous.get("text"), str)
        ):
            merged[-1] = type(previous)({**previous, "text": previous["text"] + output["text"]})
        else:
            merged.append(output)
    return merged
