"""Secret scrubbing: every pattern is found, the secret never survives."""

from __future__ import annotations

from collections import Counter

import pytest

from kfm_runbooks import redact

# Built by concatenation so this file itself holds no secret-shaped literal.
SAMPLES = {
    "aws-access-key-id": "key AKIA" + "Z" * 16 + " here",
    "github-token": "token ghp_" + "a1" * 18,
    "private-key": "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----",
    "slack-token": "xoxb-" + "1234567890-abcdef",
    "url-credentials": "postgres://kfm:" + "s3cretpass@db:5432/kfm",
    "assigned-secret": 'password = "' + "hunter2hunter2" + '"',
    "jwt": "eyJ" + "a" * 12 + ".eyJ" + "b" * 12 + "." + "c" * 12,
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_each_pattern_is_scrubbed(name: str) -> None:
    clean, counts = redact.scrub(SAMPLES[name])
    assert counts[name] == 1
    assert f"[REDACTED:{name}]" in clean


def test_secret_value_does_not_survive() -> None:
    clean, _ = redact.scrub(SAMPLES["url-credentials"])
    assert "s3cretpass" not in clean and "postgres://kfm:" in clean


def test_tree_scrub_counts() -> None:
    counts: Counter[str] = Counter()
    tree = {"a": [SAMPLES["aws-access-key-id"], {"b": SAMPLES["github-token"]}], "n": 3}
    out = redact.scrub_tree(tree, counts)
    assert counts == Counter({"aws-access-key-id": 1, "github-token": 1})
    assert out["n"] == 3 and "AKIA" not in str(out)


def test_ordinary_text_is_untouched() -> None:
    text = "sha256 ab39b02de5828664a6643fc221de0c81f68e1c7e73ab3a347deb8381d8718466 ok"
    assert redact.scrub(text) == (text, Counter())
