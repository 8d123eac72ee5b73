"""checks.common.paths: containment (resolved folders, last link not followed), display paths."""

from __future__ import annotations

from pathlib import Path

from kfm_runbooks.checks.catalog import json_docs as catalog_json
from kfm_runbooks.checks.common.paths import inside, lexically_inside, rel
from kfm_runbooks.checks.security import base as security_common


def test_inside_resolves_folders_but_not_the_last_component(tmp_path: Path) -> None:
    base = tmp_path / "base"
    outside = tmp_path / "outside"
    base.mkdir()
    outside.mkdir()
    (base / "link_dir").symlink_to(outside, target_is_directory=True)
    (base / "link_file").symlink_to(outside / "x.json")
    assert inside(base / "a" / "b.json", base)  # need not exist
    assert not inside(base / "link_dir" / "x.json", base)  # a linked folder leads out
    assert inside(base / "link_file", base)  # the link itself is the entry (readers refuse it)
    assert not inside(base / ".." / "outside" / "x.json", base)
    assert catalog_json.inside is inside


def test_lexically_inside_needs_no_filesystem(tmp_path: Path) -> None:
    assert lexically_inside("/srv/kfm/a/../b", "/srv/kfm")
    assert lexically_inside("/srv/kfm", "/srv/kfm/")
    assert not lexically_inside("/srv/kfm-other/x", "/srv/kfm")
    assert not lexically_inside("/srv/kfm/../etc", "/srv/kfm")
    assert security_common.inside is lexically_inside


def test_rel_is_posix_relative_or_the_bare_name() -> None:
    assert rel(Path("/b/x/../y/z.json"), Path("/b")) == "y/z.json"
    assert rel(Path("/elsewhere/z.json"), Path("/b")) == "z.json"
    assert rel(Path("/b"), Path("/b")) == "."
