"""Damage is detected, never masked: truncated or deleted array files, NaN projections or weights,
read-only libraries, disk full, and out-of-range options are one-line errors (exit 2) that lose nothing."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from library_helpers import CONFIG, TILE, checkpoint, copy_of, fixtures, reference

from dvan.cli.main import main
from dvan.errors import LibraryDamagedError, ReadOnlyLibraryError
from dvan.library import Library
from dvan.model.checkpoint import save_checkpoint
from dvan.model.dvan import DVAN

ROOT = Path(__file__).resolve().parents[2]


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.startswith(".") and not p.name.endswith(("-wal", "-shm"))}


def _one_line_error(err: str, *needles: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("dvan: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _search(path: Path, *extra: str) -> list[str]:
    return ["search", str(path), "--wav", str(fixtures()["query"]), "--model", str(checkpoint(0, trained=True)),
            "--top", "3", *extra]


@pytest.fixture()
def library(tmp_path: Path) -> Path:
    return copy_of(reference("float32")[0], tmp_path / "lib")


def _gallery(path: Path) -> Path:
    return next(path.glob("gallery-*"))


def test_truncated_features_are_refused_everywhere_then_repaired(library: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    features = library / "backbone.f16"
    os.truncate(features, features.stat().st_size - 3 * 1280 * 2)
    before = _digests(library)
    with pytest.raises(LibraryDamagedError, match="backbone.f16: damaged: .* hold 13 rows of backbone features but "
                                                  "the library records 16"):
        Library.open(library)
    assert main(["library", "info", str(library)]) == 2
    _one_line_error(capsys.readouterr().err, "backbone.f16", f"dvan library check {library} --repair")
    assert main(["library", "add", str(library), str(fixtures()["many"]), "--model", str(checkpoint(0)),
                 "--quiet"]) == 2
    _one_line_error(capsys.readouterr().err, "backbone.f16", "nothing was changed")
    assert main(["library", "reproject", str(library), "--model", str(checkpoint(1)), "--quiet"]) == 2
    _one_line_error(capsys.readouterr().err, "backbone.f16")
    assert main(_search(library)) == 2
    _one_line_error(capsys.readouterr().err, "backbone.f16", "--repair")
    assert _digests(library) == before  # nothing written, no zero-filled rows

    assert main(["library", "check", str(library), "--quiet"]) == 1
    assert "backbone.f16: 33280 bytes hold 13 rows of backbone features but the library records 16" in \
        capsys.readouterr().out
    assert main(["library", "check", str(library), "--repair", "--model", str(checkpoint(0)), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "repaired" in out
    with Library.open(library) as repaired:
        info = repaired.info()
        assert info["tiles"] == 16 and info["model"]["up_to_date"]
        assert np.isfinite(np.asarray(repaired.backbone_features()[repaired.live_rows()], dtype=np.float32)).all()
    assert main(["library", "check", str(library), "--quiet"]) == 0
    assert main(_search(library)) == 0


def test_deleted_gallery_is_refused_and_recomputed_by_repair(library: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    gallery = _gallery(library)
    gallery.unlink()
    assert main(["library", "info", str(library)]) == 2
    _one_line_error(capsys.readouterr().err, gallery.name, "missing", "--repair")
    assert main(["library", "reproject", str(library), "--model", str(checkpoint(0)), "--quiet"]) == 2
    _one_line_error(capsys.readouterr().err, gallery.name)
    assert main(["library", "check", str(library), "--repair", "--model", str(checkpoint(1)), "--quiet"]) == 0
    assert "dropped projections" in capsys.readouterr().out
    assert main(_search(library)) == 0  # the gallery is for model 1 now: recomputed for model 0, no raster read
    assert "computing projections" in capsys.readouterr().err
    assert gallery.is_file()


def test_nan_projections_are_never_ranked(library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gallery = _gallery(library)
    values = np.memmap(gallery, dtype=np.float32, mode="r+").reshape(16, -1)
    values[[2, 9]] = np.nan
    values.flush()
    del values
    assert main(_search(library)) == 2
    _one_line_error(capsys.readouterr().err, "2 of 16 scores are NaN", f"dvan library check {library} --repair")
    assert main(["library", "check", str(library), "--quiet"]) == 1
    assert "2 row(s) of gallery projections hold NaN/Inf" in capsys.readouterr().out
    assert main(["library", "check", str(library), "--repair", "--model", str(checkpoint(0)), "--quiet"]) == 0
    capsys.readouterr()
    assert main(_search(library, "--json")) == 0
    assert "nan" not in capsys.readouterr().out.lower()


def test_finite_overwrites_are_caught_by_block_digests_and_repaired(library: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    features = np.memmap(library / "backbone.f16", dtype=np.float16, mode="r+").reshape(16, -1)
    original = np.array(features[7])
    features[7] = 0.0  # finite, right size: only the digest recorded at commit can tell
    features.flush()
    gallery = np.memmap(_gallery(library), dtype=np.float32, mode="r+").reshape(16, -1)
    gallery[5] += 0.25
    gallery.flush()
    del gallery
    assert main(["library", "info", str(library)]) == 0  # sizes are intact: the cheap checks pass
    capsys.readouterr()
    assert main(["library", "check", str(library), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "backbone.f16: 1 block(s) of 1024 rows of backbone features changed since they were written" in out
    assert f"{_gallery(library).name}: 1 block(s) of 1024 rows of gallery projections changed" in out
    features[7] = original  # (re-importing damaged features is covered above) only the projections stay damaged
    features.flush()
    del features
    assert main(["library", "check", str(library), "--repair", "--model", str(checkpoint(0)), "--quiet"]) == 0
    assert "backbone.f16" not in capsys.readouterr().out
    assert main(["library", "check", str(library), "--quiet"]) == 0
    with Library.open(library) as repaired:
        assert repaired.info()["model"]["up_to_date"]
        assert float(np.asarray(repaired.gallery()[5])[0]) == pytest.approx(float(np.asarray(
            np.memmap(reference("float32")[0] / _gallery(library).name, dtype=np.float32, mode="r"))[5 * 512]),
            abs=1e-6)


def test_a_model_with_nan_weights_shows_no_ranking(library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    model = DVAN(CONFIG)
    with torch.no_grad():
        model.fusion.classifier.weight.fill_(float("nan"))
    broken = save_checkpoint(model, library.parent / "nan.safetensors", info={"trained": True})
    argv = _search(library)
    argv[argv.index("--model") + 1] = str(broken)
    assert main(argv) == 2
    _one_line_error(capsys.readouterr().err, str(broken), "NaN", "unusable")  # refused at load, before any ranking


def _read_only_copy(source: Path, target: Path) -> Path:
    """A library that truly cannot be written: chmod for a normal user, a read-only bind mount for root
    (root ignores permissions)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".lock"))
    if os.geteuid() != 0:
        for path in [target, *target.iterdir()]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        return target
    mounted = target.parent / "ro"
    mounted.mkdir()
    if subprocess.run(["mount", "--bind", str(target), str(mounted)], capture_output=True).returncode != 0:
        pytest.skip("running as root without permission to mount: cannot make a read-only folder")
    subprocess.run(["mount", "-o", "remount,ro,bind", str(mounted)], check=True, capture_output=True)
    return mounted


def test_read_only_library_is_searchable_and_writes_say_read_only(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    source = copy_of(reference("float32")[0], tmp_path / "source")
    with Library.open(source) as opened:  # checkpoint the WAL, as a library copied to a share would be
        opened.sql("PRAGMA wal_checkpoint(TRUNCATE)")
    library = _read_only_copy(source, tmp_path / "copy")
    try:
        assert main(["library", "info", str(library)]) == 0
        assert "16 tiles" in capsys.readouterr().out
        assert main(_search(library, "--json")) == 0
        assert '"rank": 3' in capsys.readouterr().out
        assert main(["library", "remove", str(library), str(fixtures()["utm_rgb"])]) == 2
        line = _one_line_error(capsys.readouterr().err, "the library is read-only", "copy the folder")
        assert "unreadable" not in line
        with Library.open(library) as opened, pytest.raises(ReadOnlyLibraryError):
            with opened.writer():
                pass
        assert main(["library", "add", str(library), str(fixtures()["png"]), "--model", str(checkpoint(0)),
                     "--quiet"]) == 2
        _one_line_error(capsys.readouterr().err, "read-only")
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(library)], capture_output=True)


def test_disk_full_during_add_is_one_line_and_loses_nothing(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        library = disk / "lib"
        assert main(["library", "create", str(library), "--tile-size", str(TILE)]) == 0
        assert main(["library", "add", str(library), str(fixtures()["png"]), "--model", str(checkpoint(0)),
                     "--quiet"]) == 0
        before = {name: (library / name).read_bytes() for name in ("backbone.f16", "thumbs.bin")}
        filler = disk / "filler"
        with open(filler, "wb") as handle:  # leave room to open the library, not to import 15 tiles
            free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
            handle.write(b"\0" * max(0, free - 48 * 1024))
        assert main(["library", "add", str(library), str(fixtures()["rasters"]), "--model", str(checkpoint(0)),
                     "--quiet"]) == 2
        _one_line_error(capsys.readouterr().err, "disk full", "nothing saved before is lost",
                        "run the same command again")
        filler.unlink()
        with Library.open(library) as opened:
            assert opened.info()["tiles"] >= 1
            assert opened.tiles(fixtures()["png"])
        for name, data in before.items():  # committed bytes untouched (bytes past them are never read)
            assert (library / name).read_bytes()[:len(data)] == data
        assert main(["library", "add", str(library), str(fixtures()["rasters"]), "--model", str(checkpoint(0)),
                     "--quiet"]) == 1  # the two broken fixtures fail; everything else goes in
        with Library.open(library) as opened:
            assert opened.info()["tiles"] == 16
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


@pytest.mark.parametrize(("argv", "needle"), [
    ("library add {lib} {png} --model {ckpt} --overlap -10", "--overlap -10: the overlap must be between 0"),
    ("library add {lib} {png} --model {ckpt} --tile-size 0", "--tile-size 0: tiles must be at least 16 pixels"),
    ("library add {lib} {png} --model {ckpt} --max-pixels nan", "--max-pixels nan"),
    ("library create {new} --tile-size 0", "tile size 0 / overlap 0 invalid"),
    ("library create {new} --overlap -10", "tile size 256 / overlap -10 invalid"),
    ("search {lib} --wav {wav} --model {ckpt} --top -5", "--top -5: ask for at least 1 result"),
    ("search {lib} --wav {wav} --model {ckpt} --bbox nan 0 1 1", "--bbox nan 0 1 1: give four finite"),
    ("search {lib} --wav {wav} --model {ckpt} --bbox 0 -95 1 1", "S and N in [-90, 90]"),
    ("captions {lib} --tile 1 --model {ckpt} --top 0", "--top 0: ask for at least 1 result"),
])
def test_out_of_range_options_are_one_line_errors(argv: str, needle: str, library: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    before = _digests(library)
    names = {"lib": str(library), "png": str(fixtures()["png"]), "wav": str(fixtures()["query"]),
             "new": str(library.parent / "new"), "ckpt": str(checkpoint(0, trained=True))}
    assert main([part.format(**names) for part in argv.split()]) == 2
    _one_line_error(capsys.readouterr().err, needle)
    assert _digests(library) == before
    assert not (library.parent / "new").exists()


def test_symlink_loop_in_a_folder_is_reported_and_the_rest_imported(tmp_path: Path) -> None:
    """Through a real ``dvan`` subprocess: a bad entry is one FAILED line, no traceback."""
    folder = tmp_path / "drop"
    folder.mkdir()
    for name in ("chip0.tif", "chip1.tif"):
        shutil.copy(fixtures()["many"] / name, folder / name)
    os.symlink("loop.tif", folder / "loop.tif")
    os.symlink(fixtures()["utm_rgb"], folder / "elsewhere.tif")  # a link leading out of the folder
    os.symlink(".", folder / "again")  # a folder loop: never followed
    library = tmp_path / "lib"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    Library.create(library, tile_size=TILE).close()
    result = subprocess.run([sys.executable, "-m", "dvan.cli.main", "library", "add", str(library), str(folder),
                             "--model", str(checkpoint(0)), "--quiet"],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"FAILED {folder / 'loop.tif'}: symbolic link loop" in result.stdout
    assert f"FAILED {folder / 'elsewhere.tif'}: leads to {fixtures()['utm_rgb']}, outside the folders" in result.stdout
    assert "2 tiles imported" in result.stdout and "2 new" in result.stdout
