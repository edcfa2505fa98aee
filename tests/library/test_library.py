"""Tile library: tiling, footprints in two CRSs, band cases, broken files, idempotence, captions."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from library_helpers import TILE, bundle, checkpoint, copy_of, fixtures, reference
from PIL import Image
from rasterio.warp import transform as warp_transform

from dvan.errors import BackboneMismatchError, Cancelled, LibraryError
from dvan.library import Library, add_captions, ensure_gallery, import_paths, tile_windows
from dvan.library.projection import gallery_key, project_features
from dvan.progress import CancelToken, Progress
from dvan.search import SearchEngine


def _by_source(library: Library) -> dict[str, list]:
    tiles: dict[str, list] = {}
    for tile in library.tiles():
        tiles.setdefault(tile.source.name, []).append(tile)
    return tiles


def test_tile_windows_cover_the_raster_with_full_tiles() -> None:
    windows = tile_windows(300, 200, 128)
    assert [w.as_tuple() for w in windows] == [
        (0, 0, 128, 128), (128, 0, 128, 128), (172, 0, 128, 128),
        (0, 72, 128, 128), (128, 72, 128, 128), (172, 72, 128, 128)]
    assert [w.as_tuple() for w in tile_windows(300, 100, 128, overlap=28)] == [
        (0, 0, 128, 100), (100, 0, 128, 100), (172, 0, 128, 100)]
    assert [w.as_tuple() for w in tile_windows(64, 40, 128)] == [(0, 0, 64, 40)]  # a small chip is one tile
    with pytest.raises(ValueError):
        tile_windows(10, 10, 128, overlap=128)


def test_folder_import_reports_corrupt_files_and_skips_non_rasters() -> None:
    _, report = reference()
    failed = {path.name: reason for path, reason in report.failed}
    assert set(failed) == {"corrupt.tif", "truncated.tif"}
    assert "not a readable raster" in failed["corrupt.tif"]
    assert "damaged raster" in failed["truncated.tif"] and "TIFFReadEncodedStrip" in failed["truncated.tif"]
    assert report.skipped_files == 2  # notes.txt and README, quietly
    assert sorted(p.name for p, _ in report.added) == ["chip.jpg", "chip.png", "nodata.tif", "rgba.tif", "scene.jp2",
                                                        "uint16.tif", "utm_rgb.tif", "wgs84_gray.tif"]
    assert report.tiles == 16 and report.nodata_skipped == 1


def test_tiles_per_source_and_footprints_in_two_crs() -> None:
    path, _ = reference()
    with Library.open(path) as library:
        tiles = _by_source(library)
        info = library.info()
    assert {name: len(found) for name, found in tiles.items()} == {
        "utm_rgb.tif": 6, "wgs84_gray.tif": 4, "rgba.tif": 1, "uint16.tif": 1, "nodata.tif": 1, "scene.jp2": 1,
        "chip.png": 1, "chip.jpg": 1}
    assert info["tiles"] == 16 and info["tiles_georeferenced"] == 14 and info["sources_complete"] == 8

    utm = next(t for t in tiles["utm_rgb.tif"] if t.window.as_tuple() == (172, 72, 128, 128))
    assert utm.crs == "EPSG:32611" and utm.pixel_size == (0.5, 0.5)
    left, top = 380000.0 + 172 * 0.5, 3770000.0 - 72 * 0.5
    assert utm.bounds == pytest.approx((left, top - 64.0, left + 64.0, top))
    xs, ys = [left, left + 64.0, left + 64.0, left], [top, top, top - 64.0, top - 64.0]
    lons, lats = warp_transform("EPSG:32611", "EPSG:4326", xs, ys)
    west, south, east, north = utm.lonlat_bounds
    assert west == pytest.approx(min(lons), abs=1e-7) and east == pytest.approx(max(lons), abs=1e-7)
    assert south == pytest.approx(min(lats), abs=1e-7) and north == pytest.approx(max(lats), abs=1e-7)
    assert np.allclose(utm.lonlat_polygon, list(zip(lons, lats, strict=True)), atol=1e-9)
    assert -118.31 < west < east < -118.29 and 34.06 < south < north < 34.07
    assert len(utm.lonlat_polygon) == 4

    geo = next(t for t in tiles["wgs84_gray.tif"] if t.window.as_tuple() == (72, 22, 128, 128))
    assert geo.crs == "EPSG:4326" and geo.pixel_size == pytest.approx((1e-5, 1e-5))
    expected = (-118.25 + 72e-5, 34.05 - 150e-5, -118.25 + 200e-5, 34.05 - 22e-5)
    assert geo.bounds == pytest.approx(expected) and geo.lonlat_bounds == pytest.approx(expected)

    mercator = tiles["scene.jp2"][0]  # JPEG2000 in a third CRS
    assert mercator.crs == "EPSG:3857" and mercator.window.as_tuple() == (0, 0, 100, 80)
    west, south, east, north = mercator.lonlat_bounds
    assert 19.99 < west < east < 20.01 and 49.99 < south < north < 50.01

    for name in ("chip.png", "chip.jpg"):  # plain images: one tile, no georeferencing
        chip = tiles[name][0]
        assert chip.crs is None and chip.bounds is None and chip.lonlat_bounds is None and chip.pixel_size is None
    assert tiles["chip.jpg"][0].window.as_tuple() == (0, 0, 48, 40)


def test_band_cases_alpha_sixteen_bit_gray_and_nodata() -> None:
    path, _ = reference()
    with Library.open(path) as library:
        tiles = _by_source(library)
        rgba = tiles["rgba.tif"][0]
        assert rgba.valid_fraction == pytest.approx(0.5)
        pixels = library.read_tile_image(rgba.id)
        assert pixels.shape == (128, 128, 3) and pixels[:, :64].max() == 0 and pixels[:, 64:].mean() > 50

        wide = library.read_tile_image(tiles["uint16.tif"][0].id)
        assert wide.dtype == np.uint8 and wide.min() == 0 and wide.max() == 255
        assert 0.01 < (wide == 255).mean() < 0.05  # the 2-98 % stretch clips ~2 % (hot pixels ignored)
        with rasterio.open(fixtures()["uint16"]) as src:
            raw = src.read(1).astype(np.float64)
        low, high = np.percentile(raw, [2, 98])
        assert high < 4095  # the 65535 hot pixels do not set the range
        expected = np.clip(np.rint((raw - low) * 255.0 / (high - low)), 0, 255)
        assert np.abs(wide[:, :, 0].astype(np.float64) - expected).max() <= 1

        gray = library.read_tile_image(tiles["wgs84_gray.tif"][0].id)
        assert (gray[:, :, 0] == gray[:, :, 1]).all() and (gray[:, :, 1] == gray[:, :, 2]).all()

        nodata = tiles["nodata.tif"]
        assert len(nodata) == 1 and nodata[0].window.as_tuple() == (0, 0, 128, 128)  # right tile all nodata
        assert nodata[0].valid_fraction == pytest.approx(1 - 20 * 40 / 128**2)
        assert library.read_tile_image(nodata[0].id)[:20, :40].max() == 0
        source = library.source(fixtures()["nodata"])
        assert source is not None and source.windows == 2 and source.tiles == 1 and source.skipped_nodata == 1

        thumb = Image.open(io.BytesIO(library.thumbnail(rgba.id)))
        assert thumb.format == "JPEG" and max(thumb.size) <= 128
        assert np.asarray(thumb)[:, :50].mean() < 10  # the transparent half is black


def test_reimport_is_idempotent_and_features_are_float16_backbone_outputs(tmp_path: Path) -> None:
    library = Library.open(copy_of(reference()[0], tmp_path / "lib"))
    before = library.info()
    report = import_paths(library, [fixtures()["rasters"]], bundle=bundle(0))
    assert report.tiles == 0 and len(report.unchanged) == 8 and not report.added and not report.reindexed
    assert library.info()["rows"] == before["rows"] == 16
    tile = next(t for t in library.tiles() if t.source.name == "utm_rgb.tif")
    expected = bundle(0).backbone.features([library.read_tile_image(tile.id)]).astype(np.float16)
    np.testing.assert_allclose(library.tile_features([tile.id]), expected.astype(np.float32), rtol=0, atol=2e-3)
    library.close()


def test_changed_file_is_reindexed_and_touched_file_is_not(tmp_path: Path) -> None:
    chip = tmp_path / "scene.png"
    shutil.copy(fixtures()["png"], chip)
    library = Library.create(tmp_path / "lib", tile_size=TILE)
    first = import_paths(library, [chip], bundle=bundle(0))
    assert first.tiles == 1
    old = library.tiles()[0]
    old_features = library.tile_features([old.id])

    os.utime(chip, ns=(chip.stat().st_atime_ns, chip.stat().st_mtime_ns + 5_000_000_000))  # touched only
    touched = import_paths(library, [chip], bundle=bundle(0))
    assert touched.tiles == 0 and touched.unchanged == [chip.resolve()]

    pixels = np.asarray(Image.open(chip))[::-1].copy()  # same size, different content
    Image.fromarray(pixels).save(chip)
    changed = import_paths(library, [chip], bundle=bundle(0))
    assert changed.reindexed == [chip.resolve()] and changed.tiles == 1
    new = library.tiles()
    assert len(new) == 1 and new[0].id != old.id
    assert not np.allclose(library.tile_features([new[0].id]), old_features)
    assert library.info()["unused_rows"] == 1  # the old tile's row is a hole, never scored
    library.close()


def test_backbone_mismatch_says_how_to_reindex(tmp_path: Path) -> None:
    library = Library.create(tmp_path / "vgg", backbone="vgg16-fc7")
    with pytest.raises(BackboneMismatchError, match=r"dvan library reindex .* --backbone efficientnet-lite0"):
        import_paths(library, [fixtures()["png"]], bundle=bundle(0))
    with pytest.raises(BackboneMismatchError, match="re-index"):
        SearchEngine(library, bundle(0))
    library.close()


def test_new_model_is_projected_from_stored_features_without_reading_rasters(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    library = Library.open(copy_of(reference()[0], tmp_path / "lib"))
    other = bundle(1)
    assert gallery_key(other.model) != library.meta("gallery_key")

    def no_raster_reads(*_: object) -> None:
        raise AssertionError("reprojection must not read rasters")

    monkeypatch.setattr("dvan.library.raster.open_raster", no_raster_reads)
    monkeypatch.setattr("dvan.library.importer.open_raster", no_raster_reads)
    reports: list[Progress] = []
    assert ensure_gallery(library, other, reports.append)
    assert reports[-1].stage == "reproject" and reports[-1].done == 16
    assert library.meta("gallery_key") == gallery_key(other.model)
    expected = project_features(other.model, np.asarray(library.backbone_features()))
    np.testing.assert_array_equal(np.asarray(library.gallery()), expected)
    assert [p.name for p in library.path.glob("gallery-*")] == [f"gallery-{gallery_key(other.model)}.f32"]
    assert not ensure_gallery(library, other)  # up to date: nothing to do
    library.close()


def test_remove_sources_by_file_and_folder(tmp_path: Path) -> None:
    library = Library.open(copy_of(reference()[0], tmp_path / "lib"))
    with library.writer():
        removed = library.delete_sources(library.source_ids_for(fixtures()["utm_rgb"]))
        assert removed == 6
        assert library.delete_sources(library.source_ids_for(fixtures()["rasters"] / "sub")) == 2
    assert library.info()["tiles"] == 8 and library.info()["unused_rows"] == 8
    assert library.live_rows().size == 8
    with pytest.raises(LibraryError, match="not a source"):
        library.rows_of_sources([fixtures()["utm_rgb"]])
    library.close()


def test_cancel_keeps_whole_batches_and_import_resumes(tmp_path: Path) -> None:
    library = Library.create(tmp_path / "lib", tile_size=TILE)
    token = CancelToken()

    def cancel_after_first_batch(report: Progress) -> None:
        if report.stage == "import" and report.done >= 4:
            token.cancel()

    with pytest.raises(Cancelled):
        import_paths(library, [fixtures()["many"]], bundle=bundle(0), batch_size=4,
                     progress=cancel_after_first_batch, cancel=token)
    partial = library.info()
    assert 0 < partial["tiles"] < 12 and partial["sources_incomplete"] == 1
    report = import_paths(library, [fixtures()["many"]], bundle=bundle(0), batch_size=4)
    assert report.resumed and library.info()["tiles"] == 12 and library.info()["sources_incomplete"] == 0
    library.close()


def test_captions_are_added_once_and_ranked_by_the_fusion(tmp_path: Path) -> None:
    import torch

    library = Library.open(copy_of(reference()[0], tmp_path / "lib"))
    model = bundle(0)
    report = add_captions(library, fixtures()["manifest"], model)
    assert report.added == 4 and not report.failed
    again = add_captions(library, fixtures()["manifest"], model)
    assert again.added == 0 and again.unchanged == 4
    engine = SearchEngine(library, model)
    hits = engine.captions(fixtures()["png"], top_k=4)
    assert [h.rank for h in hits] == [1, 2, 3, 4]
    # reference: the full fusion of every (image, caption audio) pair
    image = model.backbone.features([np.array(Image.open(fixtures()["png"]).convert("RGB"))])
    with torch.no_grad():
        audio = model.audio_frontend([c.audio for c in library.captions()])
        v_s = model.model.encode_audio(audio)
        v_i = torch.from_numpy(image.astype(np.float16).astype(np.float32)).expand(len(v_s), -1)
        expected = model.model.fusion.match_probability(v_i, v_s).numpy()
    by_audio = {c.audio: p for c, p in zip(library.captions(), expected, strict=True)}
    for hit in hits:
        assert hit.probability == pytest.approx(by_audio[hit.caption.audio], abs=1e-5)
    assert [h.probability for h in hits] == sorted((h.probability for h in hits), reverse=True)
    tile_hits = engine.captions(library.tiles()[0].id, top_k=2)
    assert len(tile_hits) == 2
    library.close()


def test_import_without_model_projects_before_first_search(tmp_path: Path) -> None:
    library = Library.create(tmp_path / "lib", tile_size=TILE)
    import_paths(library, [fixtures()["png"], fixtures()["jpg"]], backbone=bundle(0).backbone)
    assert library.info()["model"]["gallery_key"] is None
    engine = SearchEngine(library, bundle(0))
    assert engine.needs_projection
    with pytest.raises(LibraryError, match="reproject"):
        engine.search(fixtures()["query"])
    engine.prepare()
    assert not engine.needs_projection and len(engine.search(fixtures()["query"], top_k=5)) == 2
    library.close()


def test_library_cli_create_add_info_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dvan.cli.main import main

    path = tmp_path / "cli-lib"
    assert main(["library", "create", str(path), "--tile-size", str(TILE)]) == 0
    assert main(["library", "create", str(path)]) == 2  # exists already
    code = main(["library", "add", str(path), str(fixtures()["rasters"] / "sub"), "--model", str(checkpoint(0)),
                 "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "2 tiles imported" in out
    assert main(["library", "info", str(path), "--sources"]) == 0
    out = capsys.readouterr().out
    assert "2 tiles" in out and "chip.png" in out and "up to date" in out
    assert main(["library", "remove", str(path), str(fixtures()["png"])]) == 0
    assert "removed 1 source file(s) and 1 tile(s)" in capsys.readouterr().out
    assert main(["library", "remove", str(path), str(fixtures()["png"])]) == 2
    assert "not a source" in capsys.readouterr().err
    assert main(["library", "reproject", str(path), "--model", str(checkpoint(1)), "--quiet"]) == 0
    assert "recomputed" in capsys.readouterr().out
    assert main(["library", "info", "--json", str(path)]) == 0
    assert '"tiles": 1' in capsys.readouterr().out
    assert main(["library", "reindex", str(path), "--model", str(checkpoint(0)), "--quiet"]) == 0
    assert "re-indexed with efficientnet-lite0" in capsys.readouterr().out
    with Library.open(path) as library:
        assert [t.source.name for t in library.tiles()] == ["chip.jpg"] and library.meta("reindex_pending") == []
    audio = [str(p) for p in sorted((fixtures()["manifest"].parent).glob("caption*.wav"))[:2]]
    assert main(["library", "add-captions", str(path), "--image", str(fixtures()["jpg"]), "--audio", *audio,
                 "--text", "a textured chip", "--model", str(checkpoint(0)), "--quiet"]) == 0
    assert "2 spoken caption(s) added" in capsys.readouterr().out
    with Library.open(path) as library:
        assert [c.text for c in library.captions()] == ["a textured chip"] * 2
    assert main(["library", "info", str(tmp_path / "nowhere")]) == 2
    assert "no library here" in capsys.readouterr().err
