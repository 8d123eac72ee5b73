"""A target is a description, not a trap: paths checked at load, one-line KFM checkouts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kfm_runbooks import ledger
from kfm_runbooks.errors import EXIT_BAD_INPUT, TargetError
from kfm_runbooks.target import MAX_TARGET_BYTES, load_target
from kfm_runbooks.target_layout import KEYS, get

from .conftest import CHECKSUM, KFM_SAMPLE, Cli


def _write(folder: Path, data: dict[str, Any], name: str = "target.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.parametrize("sample", sorted(KFM_SAMPLE.glob("*.target.yaml")), ids=lambda p: p.stem)
def test_one_line_repo_target_finds_what_the_section_targets_name(
    sample: Path, tmp_path: Path
) -> None:
    """`repo: <KFM checkout>` gives every section KFM's layout: the paths the hand-written
    section targets of tests/kfm_sample name are exactly where the defaults point."""
    one_line = load_target(_write(tmp_path, {"name": "kfm", "repo": str(KFM_SAMPLE)}))
    explicit = load_target(sample)
    for section, kinds in KEYS.items():
        if not explicit.has(section):
            continue
        for key, kind in kinds.items():
            if get(explicit.section(section), key) is None or kind in ("write", "state"):
                continue
            if kind == "paths":
                covered = one_line.resolve_many(section, key)
                for path in explicit.resolve_many(section, key):
                    assert any(p == path or p in path.parents for p in covered), path
            else:
                assert explicit.resolve(section, key) == one_line.resolve(section, key), (
                    f"{section}.{key}"
                )


def test_sections_override_the_layout_and_resolve_in_the_repo(tmp_path: Path) -> None:
    target = load_target(
        _write(
            tmp_path,
            {"name": "kfm", "root": str(KFM_SAMPLE), "catalog": {"items": ["data/catalog"]}},
        )
    )
    assert target.resolve_many("catalog", "items") == [KFM_SAMPLE / "data/catalog"]
    # keys not overridden keep KFM's default
    assert target.resolve("catalog", "asset_root") == KFM_SAMPLE / "fixtures/data/catalog_health"


def test_layout_defaults_missing_from_a_checkout_are_left_out(tmp_path: Path) -> None:
    repo = tmp_path / "kfm"
    (repo / "data/catalog").mkdir(parents=True)
    target = load_target(_write(tmp_path, {"name": "kfm", "repo": "kfm"}))
    assert target.resolve_many("catalog_provenance", "entries") == [repo / "data/catalog"]
    assert target.resolve_many("catalog_provenance", "evidence") == []
    with pytest.raises(TargetError, match="has none of KFM's default paths"):
        target.section("ui_registry")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"repo": "nowhere"}, r"'repo' = 'nowhere' does not exist"),
        ({"root": "file.txt"}, r"'root' \(.*\) must be a folder"),
        ({"repo": ".", "root": "."}, "not both"),
        ({"catalog": {"root": "catalgo/catalog.json"}}, r"'catalog.root' = .* does not exist"),
        ({"catalog": {"root": "folder"}}, r"'catalog.root' \(.*\) must be a file"),
        ({"catalog": {"items": ["folder", "gone"]}}, r"'catalog.items' = 'gone' does not exist"),
        ({"catalog": {"asset_root": "file.txt"}}, r"'catalog.asset_root' .* must be a folder"),
        ({"catalog_labels": {"records": []}}, r"'catalog_labels.records' is an empty list"),
        (
            {"catalog_validation": {"schemas": {"kfm_stac_profile": "x.json"}}},
            r"'catalog_validation.schemas.kfm_stac_profile' = 'x.json' does not exist",
        ),
    ],
)
def test_a_wrong_path_is_bad_input_naming_the_key(
    tmp_path: Path, data: dict[str, Any], message: str
) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(TargetError, match=message) as raised:
        load_target(_write(tmp_path, {"name": "t", **data}))
    assert raised.value.exit_code == EXIT_BAD_INPUT


def test_write_areas_are_never_inside_an_incident_workspace(
    tmp_path: Path, incident: tuple[str, Path]
) -> None:
    _, workspace = incident
    (tmp_path / "items").mkdir()
    for area in (workspace / "10_evidence" / "quarantine", workspace / "20_actions"):
        with pytest.raises(TargetError, match=r"'catalog.quarantine' .* inside incident workspace"):
            load_target(
                _write(
                    tmp_path, {"name": "t", "catalog": {"items": "items", "quarantine": str(area)}}
                )
            )
    # a target that sits inside a workspace cannot default its write areas there either
    inside = workspace / "scratch"
    (inside / "items").mkdir(parents=True)
    with pytest.raises(TargetError, match=r"'catalog.quarantine \(default\)'"):
        load_target(_write(inside, {"name": "t", "catalog": {"items": "items"}}))


def test_default_write_areas_lie_outside_the_inspected_data(tmp_path: Path) -> None:
    (tmp_path / "catalog").mkdir()
    (tmp_path / "catalog/catalog.json").write_text("{}")
    target = load_target(
        _write(tmp_path, {"name": "t", "catalog": {"root": "catalog/catalog.json"}})
    )
    quarantine = target.resolve("catalog", "quarantine")
    assert quarantine == tmp_path / ".kfm-runbooks/catalog/quarantine"
    assert tmp_path / "catalog" not in quarantine.parents  # type: ignore[union-attr]


def test_an_oversized_target_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("name: big\n# " + "x" * MAX_TARGET_BYTES + "\n")
    with pytest.raises(TargetError, match="over the 1048576-byte limit"):
        load_target(path)


def test_run_with_a_typo_in_the_target_exits_2_and_records_nothing(
    cli: Cli, incident: tuple[str, Path], tmp_path: Path
) -> None:
    incident_id, workspace = incident
    before = len(ledger.check(workspace / "10_evidence/ledger.jsonl").entries)
    target = _write(tmp_path, {"name": "typo", "catalog": {"root": "catalgo/catalog.json"}})
    result = cli("run", CHECKSUM, "--incident", incident_id, "--target", str(target))
    assert result.exit_code == EXIT_BAD_INPUT
    assert "'catalog.root'" in result.stderr and "does not exist" in result.stderr
    assert len(ledger.check(workspace / "10_evidence/ledger.jsonl").entries) == before
