"""Secret patterns: found in runbook sources (lint), scrubbed from executed notebooks.

An executed notebook is evidence and may be shared (postmortems, bundles). Before it is
sealed, every string in its cells and outputs is scrubbed of anything that looks like a
credential; the count per pattern (never the value) goes into the ledger.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Pattern:
    name: str
    regex: re.Pattern[str]
    group: int = 0  # which group is the secret (0: the whole match)


PATTERNS: tuple[Pattern, ...] = (
    Pattern(
        "private-key",
        re.compile(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]*?"
            r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----"
        ),
    ),
    Pattern("aws-access-key-id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    Pattern(
        "aws-secret-access-key",
        re.compile(r"(?i)aws_secret_access_key\s*[:=]\s*['\"]?([A-Za-z0-9/+=]{40})"),
        1,
    ),
    Pattern(
        "github-token",
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b"),
    ),
    Pattern("slack-token", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}")),
    Pattern("google-api-key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    Pattern("stripe-key", re.compile(r"\b[sr]k_live_[0-9a-zA-Z]{24,}\b")),
    Pattern(
        "jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")
    ),
    Pattern("url-credentials", re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@]+:([^/\s@]+)@"), 1),
    Pattern(
        "assigned-secret",
        re.compile(
            r"(?i)\b(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token)"
            r"\b\s*[:=]\s*['\"]([^'\"\s]{8,})['\"]"
        ),
        1,
    ),
    Pattern("bearer-token", re.compile(r"(?i)\bbearer\s+([A-Za-z0-9._~+/-]{20,}=*)")),
)


def find(text: str) -> list[tuple[str, int, int]]:
    """(pattern name, start, end) of each secret span in `text`."""
    spans = []
    for pattern in PATTERNS:
        for match in pattern.regex.finditer(text):
            spans.append((pattern.name, match.start(pattern.group), match.end(pattern.group)))
    return spans


def scrub(text: str) -> tuple[str, Counter[str]]:
    counts: Counter[str] = Counter()
    spans = sorted(find(text), key=lambda span: (span[1], -span[2]))
    out: list[str] = []
    position = 0
    for name, start, end in spans:
        if start < position:
            continue  # overlapping: already scrubbed by an earlier, wider match
        out.append(text[position:start])
        out.append(f"[REDACTED:{name}]")
        position = end
        counts[name] += 1
    out.append(text[position:])
    return "".join(out), counts


def scrub_tree(value: Any, counts: Counter[str]) -> Any:
    """Scrub every string in a JSON-like tree (a notebook), returning the new tree."""
    if isinstance(value, str):
        clean, found = scrub(value)
        counts.update(found)
        return clean
    if isinstance(value, list):
        return [scrub_tree(item, counts) for item in value]
    if isinstance(value, dict):
        return {key: scrub_tree(item, counts) for key, item in value.items()}
    return value
