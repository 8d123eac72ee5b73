"""STAC catalog checks: record health, digests, JSON documents, labels, provenance, withdrawal."""
