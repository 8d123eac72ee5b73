"""checks.common.jcs: RFC 8785 against the RFC's own vectors, and one spec_hash everywhere."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from kfm_runbooks.checks.ai import citation_reports as ai_citation_reports
from kfm_runbooks.checks.catalog import stac as catalog_stac
from kfm_runbooks.checks.common import jcs
from kfm_runbooks.checks.graph import closure as graph_closure
from kfm_runbooks.checks.pipelines import gate as pipelines_gate
from kfm_runbooks.checks.pipelines import watchers as pipelines_watchers
from kfm_runbooks.checks.ui import layer_manifest as ui_layer_manifest
from kfm_runbooks.checks.ui import view_registry as ui_view_registry
from kfm_runbooks.sandbox.parts import pipelines_watchers as sandbox_watchers

SAMPLE = Path(__file__).parent / "kfm_sample"


def _double(bits: str) -> float:
    value: float = struct.unpack(">d", bytes.fromhex(bits))[0]
    return value


# RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical text.
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "text"), APPENDIX_B, ids=[b for b, _ in APPENDIX_B])
def test_numbers_match_rfc8785_appendix_b(bits: str, text: str) -> None:
    assert jcs.canonical_bytes(_double(bits)) == text.encode()


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_nan_and_infinities_have_no_canonical_form(bits: str) -> None:
    with pytest.raises(jcs.CanonicalizationError):
        jcs.canonical_bytes({"x": _double(bits)})


def test_integral_floats_lose_their_fraction_and_minus_zero_is_zero() -> None:
    assert jcs.canonical_bytes([1.0, 18.0, -0.0, 1e21, 4.50, 2e-3]) == b"[1,18,0,1e+21,4.5,0.002]"


def test_integers_beyond_ijson_are_refused_not_silently_rounded() -> None:
    assert jcs.canonical_bytes(2**53 - 1) == b"9007199254740991"
    for big in (2**53 + 1, -(2**53) - 1):
        with pytest.raises(jcs.CanonicalizationError):
            jcs.spec_hash({"n": big})
    # fingerprints of non-I-JSON data (graph properties) keep every digit instead
    assert jcs.content_bytes({"n": [2**53 + 1, 1.0]}) == b'{"n":[9007199254740993,1]}'


def test_rfc8785_section_3_2_2_example() -> None:
    text = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert jcs.canonical_bytes(json.loads(text)) == expected.encode()


def test_keys_sort_by_utf16_code_units_including_outside_the_bmp() -> None:
    # RFC 8785 section 3.2.3: U+1F600 (surrogates D83D DE00) sorts before U+FB33.
    value = {"\u20ac": 1, "\r": 2, "\ufb33": 3, "1": 4, "\U0001f600": 5, "\u0080": 6, "\u00f6": 7}
    expected = '{"\\r":2,"1":4,"\u0080":6,"\u00f6":7,"\u20ac":1,"\U0001f600":5,"\ufb33":3}'
    assert jcs.canonical_bytes(value) == expected.encode()


def test_strings_escape_minimally() -> None:
    value = {"s": '\u2028\x1f"\\\b\f\n\r\t/é'}
    assert jcs.canonical_bytes(value) == '{"s":"\u2028\\u001f\\"\\\\\\b\\f\\n\\r\\t/é"}'.encode()
    with pytest.raises(jcs.CanonicalizationError):
        jcs.canonical_bytes({"x": "\ud800"})
    with pytest.raises(jcs.CanonicalizationError):
        jcs.canonical_bytes({1: "non-string key"})


def test_legacy_sorted_keys_form_is_accepted_only_without_a_jcs_profile() -> None:
    doc = {"score": 18.0}
    legacy = "sha256:" + __import__("hashlib").sha256(b'{"score":18.0}').hexdigest()
    assert legacy != jcs.spec_hash(doc)
    assert jcs.spec_hash_matches(jcs.spec_hash(doc), doc)
    assert jcs.spec_hash_matches(legacy, doc)  # KFM's gate producer writes this form
    assert not jcs.spec_hash_matches(legacy, doc, "RFC8785-JCS")
    assert jcs.spec_hash_matches(jcs.spec_hash(doc), doc, "kfm-jcs-sha256-v1")
    assert not jcs.spec_hash_matches(jcs.spec_hash(doc), doc, "some-other-profile")
    assert not jcs.spec_hash_matches(legacy, {"score": 18.5})


def test_real_kfm_gate_packets_verify() -> None:
    """KFM's own watcher gate packets carry the legacy form (18.0 stays 18.0)."""
    folder = SAMPLE / "fixtures/contracts/v1/watchers/watcher_gate_packet/valid"
    for path in sorted(folder.glob("valid_*.json")):
        packet = json.loads(path.read_text())
        subject = {k: v for k, v in packet.items() if k != "spec_hash"}
        assert jcs.spec_hash_matches(packet["spec_hash"], subject), path.name


# --- one KFM document, every runbook-facing function that computes a spec hash ----------

IDENTITY_FIELDS = ("spec_hash", "id", "registry_id", "report_id", "assessment_id")


def _kfm_document(sharpen: bool) -> dict[str, Any]:
    document = json.loads((SAMPLE / "control_plane/watcher_registry.json").read_text())
    assert document["canonicalization_profile"] == "RFC8785-JCS"
    subject = {k: v for k, v in document.items() if k not in IDENTITY_FIELDS}
    if sharpen:  # where the old implementations disagreed: 1.0, key order outside the BMP
        subject["x_probe"] = {"score": 18.0, "\U0001f600": 1, "\ufb33": 2, "big": 1e21}
    return subject


@pytest.mark.parametrize("sharpen", [False, True], ids=["as-is", "with-disputed-values"])
def test_every_spec_hash_function_agrees_on_a_kfm_document(sharpen: bool) -> None:
    subject = _kfm_document(sharpen)
    expected = jcs.spec_hash(subject)
    computed = {
        "jcs.spec_hash": expected,
        "ai_citation_reports.identity": ai_citation_reports.identity(subject)[0],
        "graph_closure.identity": graph_closure.identity(subject)[0],
        "ui_layer_manifest.manifest_identity": ui_layer_manifest.manifest_identity(subject)[0],
        "ui_view_registry.view_identity": ui_view_registry.view_identity(subject)[0],
        "sandbox pipelines_watchers": sandbox_watchers._canonical_hash(subject),
    }
    assert computed == dict.fromkeys(computed, expected)
    # the verifying functions accept that hash, and refuse any other
    declared = {**subject, "spec_hash": expected}
    assert catalog_stac._hash_finding("doc", expected, subject, "/spec_hash") == []
    assert catalog_stac._hash_finding("doc", "sha256:" + "1" * 64, subject, "/spec_hash")
    report = pipelines_watchers.RegistryReport("registry.json")
    pipelines_watchers.registry_semantics(report, declared, SAMPLE)
    assert "REGISTRY_SPEC_HASH_MISMATCH" not in [f.code for f in report.findings]
    assert pipelines_gate.spec_hash_matches(expected, subject)
