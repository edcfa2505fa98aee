"""The embedded demo: small, built on first run, never shows results without a trained model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from library_helpers import checkpoint

from dvan.cli.main import main
from dvan.library import Library
from dvan.library.demo import demo_library_ready
from dvan.resources import resources_dir

DEMO = resources_dir() / "demo"


def test_demo_files_are_small_and_complete() -> None:
    files = [p for p in DEMO.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert sum(p.stat().st_size for p in files) < 5_000_000
    layout = json.loads((DEMO / "layout.json").read_text())
    assert layout["coordinates"] == "illustrative" and len(layout["tiles"]) == 36
    assert len(list((DEMO / "chips").glob("*.jpg"))) == 6 and len(list((DEMO / "queries").glob("*.wav"))) == 5
    assert "illustrative" in (DEMO / "README.md").read_text()


def test_demo_without_default_model_says_so_and_builds_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    resources = tmp_path / "resources"
    resources.mkdir()
    (resources / "demo").symlink_to(DEMO)
    monkeypatch.setenv("DVAN_RESOURCES", str(resources))
    monkeypatch.setenv("DVAN_DEMO_LIBRARY", str(tmp_path / "demo-library"))
    assert main(["demo"]) == 2
    assert "default model is not installed" in capsys.readouterr().err
    assert not (tmp_path / "demo-library").exists()


def test_demo_builds_its_library_once_and_ranks_tiles(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DVAN_DEMO_LIBRARY", str(tmp_path / "demo-library"))
    assert not demo_library_ready()
    assert main(["demo", "--model", str(checkpoint(0)), "--quiet"]) == 2  # untrained: refused
    assert "not marked as trained" in capsys.readouterr().err
    assert main(["demo", "--model", str(checkpoint(0)), "--allow-untrained", "--quiet", "--query", "harbor",
                 "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "42 tiles" in out and "query harbor.wav" in out and "UNTRAINED" in out
    assert len([line for line in out.splitlines() if line.strip()[:1].isdigit()]) == 3
    with Library.open(tmp_path / "demo-library") as library:
        windows = {t.window.as_tuple() for t in library.tiles(DEMO / "demo_scene.tif")}
        assert library.info()["tiles"] == 42 and library.info()["crs"] == ["EPSG:32611", "none (plain image)"]
    layout = json.loads((DEMO / "layout.json").read_text())
    assert windows == {tuple(t["window"]) for t in layout["tiles"]}
    assert main(["demo", "--model", str(checkpoint(0)), "--allow-untrained", "--quiet", "--query", "airplanes"]) == 0
    assert "42 tiles" in capsys.readouterr().out  # second run: nothing re-imported
    # complete: the viewer opens it as it is, without an import job
    assert demo_library_ready()
    assert main(["library", "remove", str(tmp_path / "demo-library"), str(DEMO / "chips" / "forest99.jpg")]) == 0
    assert not demo_library_ready(tmp_path / "demo-library")  # a demo file missing: the viewer completes it first


def test_demo_library_follows_a_moved_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    library_path = tmp_path / "demo-library"
    monkeypatch.setenv("DVAN_DEMO_LIBRARY", str(library_path))
    demo = ["demo", "--model", str(checkpoint(0)), "--allow-untrained", "--quiet", "--query", "harbor", "--top", "1"]
    assert main(demo) == 0
    with Library.open(library_path) as library:
        captions_before = len(library.captions())
    # an upgrade installs the same demo files into another folder
    moved = tmp_path / "new-install" / "resources"
    shutil.copytree(DEMO, moved / "demo")
    monkeypatch.setenv("DVAN_RESOURCES", str(moved))
    assert not demo_library_ready()  # the old install's files are still in it
    capsys.readouterr()
    assert main(demo) == 0
    assert "42 tiles" in capsys.readouterr().out  # the old copies are gone: each tile ranks once
    with Library.open(library_path) as library:
        assert {s.path.parent for s in library.sources()} <= {(moved / "demo").resolve(),
                                                              (moved / "demo" / "chips").resolve()}
        assert len(library.captions()) == captions_before
    assert demo_library_ready()
