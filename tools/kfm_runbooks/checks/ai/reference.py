"""Focus Mode's reference algorithms: the retrieval index build, the retriever, the input gate.

What the AI checks judge a Focus Mode system against (ai_focus, ai_gate, ai_retrieval,
ai_eval): a correct index for a corpus (version, weights, per-document terms), the
documents a question should retrieve, the blocked pattern a question matches. The
sandbox's Focus Mode (live/focus.py) is built from these same functions, never the other
way round: checks do not import the sandbox.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

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
