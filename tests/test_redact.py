"""Secret scrubbing: every pattern is found, the secret never survives."""

from __future__ import annotations

from collections import Counter
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from kfm_runbooks import redact

# Built by concatenation so this file itself holds no secret-shaped literal.
KEY_BODY = "MIIEpAIBAAKCAQEAq7kYbodyline\nZm9vYmFyYmF6cXV4"
PEM = "-----BEGIN RSA " + "PRIVATE KEY-----\n" + KEY_BODY + "\n-----END RSA PRIVATE KEY-----"
# (sample label, expected pattern, text, the part that is the secret)
SAMPLES = [
    ("aws-access-key-id", "aws-access-key-id", "key AKIA" + "Z" * 16 + " here", "ZZZZZZZZ"),
    ("github-token", "github-token", "token ghp_" + "a1" * 18, "a1a1a1a1"),
    ("private-key", "private-key", PEM, "bodyline"),
    ("slack-token", "slack-token", "xoxb-" + "1234567890-abcdef", "1234567890"),
    ("url", "url-credentials", "postgres://kfm:" + "s3cretpass@db:5432/kfm", "s3cretpass"),
    ("code", "assigned-secret", 'password = "' + "hunter2hunter2" + '"', "hunter2"),
    ("jwt", "jwt", "eyJ" + "a" * 12 + ".eyJ" + "b" * 12 + "." + "c" * 12, "aaaaaaaaaaaa"),
    ("env", "assigned-secret", "PGPASSWORD=" + "hunter2xyz psql -h db", "hunter2xyz"),
    ("json", "assigned-secret", '{"user": "kfm", "password": "' + 'hunter2xyz"}', "hunter2xyz"),
    ("basic-auth", "basic-auth", "Authorization: Basic " + "a2ZtOmh1bnRlcjJ4eXo=", "a2ZtOmh1"),
    (
        "pgp",
        "pgp-private-key",
        "-----BEGIN PGP "
        + "PRIVATE KEY BLOCK-----\nVersion: GnuPG\n\nlQOYBGabcdef\n=Ab12\n"
        + "-----END PGP PRIVATE KEY BLOCK-----",
        "lQOYBGabcdef",
    ),
]
TEXTS = {label: text for label, _, text, _ in SAMPLES}


@pytest.mark.parametrize(
    ("name", "text", "secret"), [s[1:] for s in SAMPLES], ids=[s[0] for s in SAMPLES]
)
def test_each_pattern_is_scrubbed(name: str, text: str, secret: str) -> None:
    clean, counts = redact.scrub(text)
    assert counts == Counter({name: 1})
    assert f"[REDACTED:{name}]" in clean
    assert secret not in clean


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        # a password holding "@": everything up to the host's "@" is the secret
        ("postgresql://kfm:" + "p@ss@w0rdX@db.internal:5432/kfm", "w0rdX", "@db.internal:5432/kfm"),
        # a PEM key cut short (no END line): its body lines go, the next sentence stays
        (
            "-----BEGIN OPENSSH " + "PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nAAAAB3Nza\n"
            "that was the key file.",
            "b3BlbnNz",
            "that was the key file.",
        ),
        # the same key as an escaped string (a repr, a JSON value)
        ("key = '-----BEGIN EC " + "PRIVATE KEY-----\\nMHcCAQEEIBodyX\\n'", "BodyX", "key = '"),
        ("export API_TOKEN=" + "'tok en-value'", "en-value", "export API_TOKEN="),
        ("curl https://api?client_secret=" + "abc123&x=1", "abc123", "&x=1"),
        ("{'api_key': '" + "k-123456'}", "k-123456", "{'api_key': '"),
        ("password: " + "hunter2xyz", "hunter2xyz", "password: "),
        ("curl -u admin:" + "hunter2xyz https://x", "hunter2xyz", "https://x"),
        ("db_password = " + '"hunter2xyz"', "hunter2xyz", "db_password = "),
    ],
)
def test_secret_shapes_found_in_the_wild(text: str, secret: str, kept: str) -> None:
    clean, counts = redact.scrub(text)
    assert secret not in clean and kept in clean and sum(counts.values()) >= 1, clean


def test_secret_value_does_not_survive() -> None:
    clean, _ = redact.scrub(TEXTS["url"])
    assert "s3cretpass" not in clean and "postgres://kfm:" in clean


def test_tree_scrub_counts() -> None:
    counts: Counter[str] = Counter()
    tree = {"a": [TEXTS["aws-access-key-id"], {"b": TEXTS["github-token"]}], "n": 3}
    out = redact.clean(tree, counts)
    assert counts == Counter({"aws-access-key-id": 1, "github-token": 1})
    assert out["n"] == 3 and "AKIA" not in str(out)


def test_fields_named_like_secrets_are_redacted_whatever_their_value() -> None:
    counts: Counter[str] = Counter()
    out = redact.clean(
        {"db_password": "x1", "API-Key": "y", "token_count": 3, "note": "x1"}, counts
    )
    assert out == {
        "db_password": "[REDACTED:assigned-secret]",
        "API-Key": "[REDACTED:assigned-secret]",
        "token_count": 3,
        "note": "x1",
    }
    assert counts == Counter({"assigned-secret": 2})


def test_clean_is_idempotent() -> None:
    text = "\n".join(TEXTS.values())
    once = redact.clean(text)
    counts: Counter[str] = Counter()
    assert redact.clean(once, counts) == once and counts == Counter()
    assert redact.clean(once.encode()) == once.encode()


def test_bytes_are_scrubbed_and_other_bytes_kept() -> None:
    raw = b"\xff\xfe binary " + TEXTS["env"].encode() + b" \x00\x01"
    out = redact.clean(raw)
    assert b"hunter2xyz" not in out and out.startswith(b"\xff\xfe binary ") and b"\x00\x01" in out


def _stream(text: str) -> nbformat.NotebookNode:
    return new_output("stream", name="stdout", text=text)


def test_multi_line_key_in_a_notebook_is_scrubbed_as_written() -> None:
    """nbformat writes strings as lists of lines: scrubbing must see the joined text."""
    nb = new_notebook(cells=[new_code_cell("print(key)", outputs=[_stream(PEM + "\n")])])
    written = nbformat.writes(redact.clean(nb))
    assert "bodyline" not in written and "[REDACTED:private-key]" in written
    nbformat.validate(nbformat.reads(written, as_version=4))


def test_a_key_printed_in_two_chunks_is_still_found() -> None:
    half = len(PEM) // 2
    outputs = [_stream(PEM[:half]), _stream(PEM[half:] + "\n")]
    nb = new_notebook(cells=[new_code_cell("print(key)", outputs=outputs)])
    cleaned = redact.clean(nb)
    text = "".join(o["text"] for o in cleaned.cells[0].outputs)
    assert "bodyline" not in text and "Zm9vYmFy" not in text
    assert "[REDACTED:private-key]" in text


def test_embedded_images_are_left_alone() -> None:
    png = "iVBORw0KGgo" + "A" * 20 + "/AKIA" + "Z" * 16 + "/"
    output = new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"})
    nb = new_notebook(cells=[new_code_cell("plot()", outputs=[output])])
    assert redact.clean(nb).cells[0].outputs[0]["data"]["image/png"] == png


def test_ordinary_text_is_untouched() -> None:
    text = "sha256 ab39b02de5828664a6643fc221de0c81f68e1c7e73ab3a347deb8381d8718466 ok"
    assert redact.scrub(text) == (text, Counter())


@pytest.mark.parametrize(
    "text",
    [
        "connect(host=h, port=5432)",
        "the basic authentication flow was fine",
        "max_tokens=100 and tokens: 5",
        "See https://example.org/a@b for the mail archive",
        "user@example.org wrote: password rotation is due",
    ],
)
def test_plain_prose_and_code_are_untouched(text: str) -> None:
    assert redact.scrub(text) == (text, Counter())


def test_a_json_secret_escaped_inside_a_string_is_found() -> None:
    text = 'json_line = "{\\"user\\": \\"kfm\\", \\"password\\": \\"' + 'hunter2xyz\\"}"'
    clean, counts = redact.scrub(text)
    assert "hunter2xyz" not in clean and counts["assigned-secret"] == 1, clean
    inner = '{"password": "' + 'a\\"b-hunter2xyz"}'
    assert "hunter2xyz" not in redact.scrub(inner)[0]


def _large(pieces: list[str], seed: int) -> str:
    """A log-sized text: the pieces scattered among ordinary lines, some very long."""
    import random

    rng = random.Random(seed)
    filler = [
        "2026-12-03T00:00:00Z GET /api/v1/items?id=42 200 12ms user=alice",
        "INFO worker started, 3 tasks queued",
        "x" * 5000,
        "",
        "  - name: layer-7",
    ]
    lines = [rng.choice(filler) for _ in range(3000)]
    for piece in pieces:
        lines.insert(rng.randrange(len(lines)), piece)
    return "\n".join(lines)


@pytest.mark.parametrize("seed", range(6))
def test_a_large_text_is_scrubbed_exactly_as_a_small_one(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large texts are searched only around each pattern's trigger: that must find exactly
    what a full scan finds, wherever the secret sits (first line, last line, next to a
    very long line, a value on the line after its key)."""
    pieces = [text for _, _, text, _ in SAMPLES] + [
        '"password":\n  "hunter2xyz"',
        "Authorization:\n Basic " + "a2ZtOmh1bnRlcjJ4eXo=",
        "token ghp_" + "b2" * 18 + " " + "y" * 9000 + " PGPASSWORD=" + "hunter3xyz",
    ]
    text = pieces[seed % len(pieces)] + "\n" + _large(pieces, seed) + "\n" + pieces[-seed - 1]
    assert len(text) >= redact.WINDOWED_FROM
    windowed = redact.find(text)
    monkeypatch.setattr(redact, "WINDOWED_FROM", len(text) + 1)
    assert windowed == redact.find(text)
    assert len(windowed) >= len(pieces)


def test_windows_stay_small_and_linear_on_one_long_line() -> None:
    """Thousands of triggers on one line (a minified JSON) do not rescan the line each
    time; ten of them in a large text leave most of it unsearched."""
    line = ('{"token_count": 1, "v": "' + "z" * 200 + '"}, ') * 5000

    def windows(text: str) -> list[tuple[int, int]] | None:
        spans = redact._SENSITIVE.spans(text, text.lower())
        assert spans is not None
        return redact._windows(spans, text)

    assert windows(line) is None  # all of it: one plain scan
    text = _large(["api_key = 'k-123456'"] * 10, seed=1)
    found = windows(text)
    assert found is not None and len(found) <= 10
    assert sum(end - start for start, end in found) < len(text) // 4


def _spellings(pattern: str) -> set[str]:
    """Every string a finite regex (literals, classes, alternatives, `?`) matches."""
    from re import _constants as c  # type: ignore[attr-defined]
    from re import _parser  # type: ignore[attr-defined]

    def expand(items: Any) -> set[str]:
        out = {""}
        for op, arg in items:
            if op is c.LITERAL:
                options = {chr(arg)}
            elif op is c.IN:
                assert all(o is c.LITERAL for o, _ in arg), arg
                options = {chr(v) for _, v in arg}
            elif op is c.BRANCH:
                options = set().union(*(expand(b) for b in arg[1]))
            elif op is c.SUBPATTERN:
                options = expand(arg[3])
            elif op is c.MAX_REPEAT and arg[:2] == (0, 1):
                options = {""} | expand(arg[2])
            else:
                raise AssertionError(f"not a finite pattern: {op}")
            out = {a + b for a in out for b in options}
        return out

    return expand(_parser.parse(pattern))


def test_every_sensitive_word_has_its_literal_trigger() -> None:
    """The fast pre-filter (_SENSITIVE) must find every word _SENSITIVE_WORD names, or a
    large text would skip a secret the regex alone would scrub."""
    words = _spellings(redact._SENSITIVE_WORD.removeprefix("(?:").removesuffix(")"))
    assert {"password", "api-key", "credentials", "privatekey"} <= words
    for word in words:
        for spelling in (word, word.upper(), word.title()):
            spans = redact._SENSITIVE.spans(spelling, spelling.lower())
            assert spans, f"{spelling!r} is sensitive but no trigger word finds it"
