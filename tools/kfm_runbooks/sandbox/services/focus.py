"""Focus Mode for the live sandbox: an input gate, an index-based retriever, cited answers.

Small but real: the gate blocks prompt-injection patterns before retrieval; the
retriever scores documents of the retrieval index (state/focus_index.json, built from
the corpus by `build_index`) by term overlap; every answer cites the documents it used,
and the citation policy can refuse uncited answers. These algorithms are the sandbox's
own: the ai checks never see them, they judge Focus Mode only by what it answers (the
evaluation set, citation and gate policies the sandbox's target names). Faults break one
of those pieces each (the index is deleted, built inverted, the gate or the citations are
switched off).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

__all__ = ["INDEX_VERSION", "answer", "build_index", "gate", "retrieve", "terms"]

_WORD = re.compile(r"[a-z0-9]+")
INDEX_VERSION = 2


def terms(text: str) -> list[str]:
    return sorted(set(_WORD.findall(text.lower())))


def build_index(corpus: list[dict[str, Any]], weights: str = "overlap") -> dict[str, Any]:
    """The retrieval index for a corpus; `weights` other than "overlap" is a bad build."""
    digest = hashlib.sha256(json.dumps(corpus, sort_keys=True).encode()).hexdigest()
    return {
        "version": INDEX_VERSION,
        "weights": weights,
        "corpus_sha256": digest,
        "docs": {
            doc["id"]: {
                "title": doc["title"],
                "text": doc["text"],
                "terms": terms(doc["title"] + " " + doc["text"]),
            }
            for doc in corpus
        },
    }


def gate(patterns: list[str], question: str, enforced: bool) -> dict[str, Any]:
    """The input gate's decision: which blocked pattern matched and whether it was enforced."""
    for pattern in patterns:
        if re.search(pattern, question, re.IGNORECASE):
            return {
                "decision": "block" if enforced else "allow",
                "matched": pattern,
                "enforced": enforced,
            }
    return {"decision": "allow", "matched": None, "enforced": enforced}


def retrieve(index: dict[str, Any], question: str, limit: int = 2) -> list[tuple[str, Any]]:
    words = set(terms(question))
    scored = [
        (len(words & set(doc["terms"])), doc_id, doc)
        for doc_id, doc in index.get("docs", {}).items()
    ]
    if index.get("weights") != "overlap":
        # a bad build: the weights are inverted, the least related documents rank first
        scored.sort(key=lambda item: (item[0], item[1]))
        return [(doc_id, doc) for _, doc_id, doc in scored[:limit]]
    scored = [item for item in scored if item[0]]
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [(doc_id, doc) for _, doc_id, doc in scored[:limit]]


def answer(
    question: str, *, patterns: list[str], flags: dict[str, Any], index: dict[str, Any] | None
) -> tuple[int, dict[str, Any]]:
    if not question.strip():
        return 400, {"error": "empty question"}
    if not flags.get("focus_enabled", True):
        return 503, {"error": "Focus Mode is disabled by the operators", "citations": []}
    decision = gate(patterns, question, bool(flags.get("input_gate_enforced", True)))
    if decision["decision"] == "block":
        return 422, {
            "error": "question blocked by the input gate",
            "gate": decision,
            "citations": [],
        }
    if not index or index.get("version") != INDEX_VERSION:
        return 503, {"error": "retrieval index unavailable", "gate": decision, "citations": []}
    docs = retrieve(index, question)
    if not docs:
        return 200, {
            "answer": "No KFM dataset matches this question.",
            "gate": decision,
            "citations": [],
        }
    text = " ".join(f"{doc['title']}: {doc['text']}." for _, doc in docs)
    citations = [doc_id for doc_id, _ in docs] if flags.get("citations_required", True) else []
    if not citations and flags.get("block_uncited_answers", False):
        return 422, {
            "error": "answer withheld: no citations (policy)",
            "gate": decision,
            "citations": [],
        }
    return 200, {"answer": text, "gate": decision, "citations": citations}
