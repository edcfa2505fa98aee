"""Export of ranked results: GeoPackage, GeoJSON and CSV reopened with pyogrio; footprints as WKT/GeoJSON; the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from library_helpers import checkpoint, copy_of, fixtures, reference

from dvan.errors import ExportError
from dvan.search.export import (
    ResultRecord,
    closed_ring,
    export_results,
    footprint_geojson,
    footprint_wkt,
    records_from_hits,
    source_crs_polygon,
)

ROOT = Path(__file__).resolve().parents[2]


def _utm_record() -> ResultRecord:
    from rasterio.warp import transform

    xs, ys = [500000.0, 500256.0, 500256.0, 500000.0], [4000000.0, 4000000.0, 3999744.0, 3999744.0]
    lons, lats = transform("EPSG:32611", "EPSG:4326", xs, ys)
    return ResultRecord(rank=1, probability=0.875, tile_id=5, source=Path("/data/utm.tif"), window=(256, 0, 256, 256),
                        crs="EPSG:32611", lonlat_polygon=tuple(zip(lons, lats, strict=True)))


def _plain_record() -> ResultRecord:
    return ResultRecord(rank=2, probability=0.125, tile_id=9, source=Path("/data/chip.jpg"), window=(0, 0, 64, 64),
                        crs=None, lonlat_polygon=None)


def _flat(record: ResultRecord) -> list[float]:
    return [v for corner in closed_ring(record.lonlat_polygon or ()) for v in corner]


def test_rings_are_closed_and_counter_clockwise() -> None:
    clockwise = ((0.0, 1.0), (1.0, 1.0), (1.0, 0.0), (0.0, 0.0))  # tl, tr, br, bl of a north-up tile
    ring = closed_ring(clockwise)
    assert ring[0] == ring[-1] and len(ring) == 5
    area = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:], strict=False))
    assert area > 0


def test_footprint_in_the_source_crs_round_trips_to_the_pixel_corners() -> None:
    record = _utm_record()
    corners = source_crs_polygon(record.crs, record.lonlat_polygon)
    flat = [v for corner in corners or () for v in corner]
    assert flat == pytest.approx([500000.0, 4000000.0, 500256.0, 4000000.0, 500256.0, 3999744.0, 500000.0, 3999744.0],
                                 abs=1e-5)
    assert footprint_wkt(record, source_crs=True).startswith("POLYGON ((500000.0 4000000.0, 500000.0 3999744.0")
    assert footprint_wkt(_plain_record()) is None and footprint_geojson(_plain_record()) is None
    feature = json.loads(footprint_geojson(record) or "")
    assert feature["geometry"]["type"] == "Polygon" and feature["properties"]["crs"] == "EPSG:32611"


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson", ".csv"])
def test_each_format_reopens_with_geometry_and_attributes(tmp_path: Path, suffix: str) -> None:
    from pyogrio.raw import read

    record = _utm_record()
    path = export_results([record, _plain_record()], tmp_path / f"results{suffix}", query="harbour.wav",
                          transcript="a harbour with boats")
    meta, _, geometry, columns = read(path)
    values = dict(zip(meta["fields"], columns, strict=True))
    assert [int(v) for v in values["rank"]] == [1, 2]
    assert [float(v) for v in values["probability"]] == pytest.approx([0.875, 0.125])
    assert list(values["query"]) == ["harbour.wav"] * 2 and list(values["transcript"]) == ["a harbour with boats"] * 2
    assert list(values["source"]) == ["/data/utm.tif", "/data/chip.jpg"]
    assert [int(v) for v in values["col_off"]] == [256, 0] and str(values["crs"][0]) == "EPSG:32611"
    assert str(values["footprint_source_wkt"][0]).startswith("POLYGON ((500000.0 4000000.0")
    if suffix == ".csv":  # OGR's CSV driver reads the WKT as text; parse it back
        wkt = str(values["wkt_wgs84"][0])
        pairs = [tuple(float(v) for v in p.split()) for p in wkt[len("POLYGON (("):-2].split(", ")]
        assert [v for p in pairs for v in p] == pytest.approx(_flat(record), abs=1e-12)
        assert str(values["wkt_wgs84"][1]) == ""
        return
    assert meta["crs"] == "EPSG:4326" and geometry[1] is None
    import struct

    count = struct.unpack_from("<I", geometry[0], 9)[0]
    ring = [struct.unpack_from("<dd", geometry[0], 13 + 16 * i) for i in range(count)]
    assert [v for p in ring for v in p] == pytest.approx(_flat(record), abs=1e-12)


def test_unknown_type_and_missing_folder_are_errors_and_an_existing_file_survives(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"\.gpkg \(GeoPackage\), \.geojson"):
        export_results([_utm_record()], tmp_path / "results.shp", query="q")
    with pytest.raises(ExportError, match="does not exist"):
        export_results([_utm_record()], tmp_path / "missing" / "results.gpkg", query="q")
    target = tmp_path / "results.geojson"
    target.write_text("keep")
    with pytest.raises(AttributeError):  # a writer failing half-way leaves the old file and no temporary
        export_results([_utm_record(), object()], target, query="q")  # type: ignore[list-item]
    assert target.read_text() == "keep" and sorted(p.name for p in tmp_path.iterdir()) == ["results.geojson"]


def test_cli_search_out_writes_a_geopackage_like_its_json(tmp_path: Path) -> None:
    from pyogrio.raw import read

    library = copy_of(reference("float32")[0], tmp_path / "lib")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "dvan.cli.main", "search", str(library), "--wav", str(fixtures()["query"]),
            "--model", str(checkpoint(0, trained=True)), "--top", "5", "--device", "cpu"]
    out = tmp_path / "results.gpkg"
    done = subprocess.run([*base, "--json", "--out", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"wrote 5 ranked tiles to {out} (GeoPackage)" in done.stderr
    hits = json.loads(done.stdout)["hits"]
    meta, _, geometry, columns = read(out)
    values = dict(zip(meta["fields"], columns, strict=True))
    assert [str(s) for s in values["source"]] == [h["source"] for h in hits]
    assert [float(p) for p in values["probability"]] == pytest.approx([h["probability"] for h in hits], abs=1e-12)
    assert [g is not None for g in geometry] == [h["lonlat_polygon"] is not None for h in hits]
    bad = subprocess.run([*base, "--out", str(tmp_path / "results.kml")], capture_output=True, text=True, env=env,
                         timeout=300)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "results.kml" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_records_from_engine_hits_keep_rank_and_window() -> None:
    from library_helpers import bundle

    from dvan.library import Library
    from dvan.search import SearchEngine

    with Library.open(reference("float32")[0]) as library:
        engine = SearchEngine(library, bundle(0))
        hits = engine.search(fixtures()["query"], top_k=3)
    records = records_from_hits(hits)
    assert [r.rank for r in records] == [1, 2, 3]
    assert [r.window for r in records] == [h.tile.window.as_tuple() for h in hits]
