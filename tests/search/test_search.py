"""Search: decomposed engine = naive per-pair fusion, kernels, filters, CLI and the untrained-model policy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from library_helpers import TILE, bundle, checkpoint, copy_of, fixtures, reference

from dvan.errors import UntrainedModelError
from dvan.library import Library, import_paths
from dvan.model.fusion import decomposed_logits
from dvan.search import SearchEngine, load_search_model
from dvan.search.kernels import Decision, chunk_logits, numba_available, top_k


@pytest.fixture(scope="module")
def engine32() -> SearchEngine:
    library = Library.open(reference("float32")[0])
    return SearchEngine(library, bundle(0))


def _hits_table(hits: list) -> list[tuple[int, float]]:
    return [(h.tile.id, h.probability) for h in hits]


def test_decomposed_engine_equals_naive_per_pair_fusion(engine32: SearchEngine) -> None:
    # The engine is shared by the module's tests: restore its backend even when an assertion fails.
    original_backend = engine32.backend
    try:
        for wav in ("query", "query2"):
            query = engine32.encode_file(fixtures()[wav])
            naive = engine32.search_naive(query, top_k=16)
            spread = max(h.probability for h in naive) - min(h.probability for h in naive)
            assert spread > 0.05  # the test model ranks tiles clearly apart
            for backend in ("numba", "torch"):
                engine32.backend = backend
                fast = engine32.search(query, top_k=16)
                assert [h.tile.id for h in fast] == [h.tile.id for h in naive], backend
                np.testing.assert_allclose([h.probability for h in fast], [h.probability for h in naive], atol=1e-6)
            top3 = engine32.search(query, top_k=3)
            assert _hits_table(top3) == _hits_table(engine32.search(query, top_k=16))[:3]
    finally:
        engine32.backend = original_backend


def test_float16_gallery_is_close_to_float32(engine32: SearchEngine, tmp_path: Path) -> None:
    library16 = Library.create(tmp_path / "half", tile_size=TILE, gallery_dtype="float16")
    import_paths(library16, [fixtures()["utm_rgb"]], bundle=bundle(0))
    engine16 = SearchEngine(library16, bundle(0))
    query = engine32.encode_file(fixtures()["query"])
    exact = {str(h.tile.window): h.probability for h in engine32.search(query, top_k=6, sources=[fixtures()["utm_rgb"]])}
    half = {str(h.tile.window): h.probability for h in engine16.search(query, top_k=6)}
    assert exact.keys() == half.keys() and len(exact) == 6
    assert max(abs(exact[k] - half[k]) for k in exact) < 2e-3
    assert np.asarray(library16.gallery()).dtype == np.float16
    library16.close()


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_kernels_match_torch_and_chunked_top_k_matches_a_full_sort(dtype: type) -> None:
    rng = np.random.default_rng(3)
    gallery = (rng.standard_normal((3000, 512)) * 3).astype(dtype)
    query = rng.standard_normal(512).astype(np.float32)
    decision = Decision(rng.standard_normal(512).astype(np.float32) * 0.1, 0.25)
    reference_logits = decomposed_logits(torch.from_numpy(gallery.astype(np.float32)),
                                         torch.from_numpy(query)[None], torch.from_numpy(decision.direction),
                                         torch.tensor(decision.offset))[0].numpy()
    rows = np.arange(3000, dtype=np.int64)
    backends = ["torch"] + (["numba"] if numba_available() else [])
    for backend in backends:
        logits = chunk_logits(gallery, rows, query, decision, backend)
        np.testing.assert_allclose(logits, reference_logits, atol=2e-5, rtol=1e-6)
        picked = rows[::7]
        np.testing.assert_allclose(chunk_logits(gallery, picked, query, decision, backend), reference_logits[picked],
                                   atol=2e-5, rtol=1e-6)
        best_rows, best_logits = top_k(gallery, rows[::3], query, decision, 25, backend=backend, chunk_rows=128)
        expected = rows[::3][np.argsort(-reference_logits[::3], kind="stable")[:25]]
        assert best_rows.tolist() == expected.tolist()
        assert (np.diff(best_logits) <= 0).all()


@pytest.mark.skipif(not numba_available(), reason="numba kernels unavailable")
def test_float16_kernels_widen_every_finite_half_exactly() -> None:
    from dvan.search import _fused

    bits = np.arange(65536, dtype=np.uint16).reshape(128, 512)
    values = bits.view(np.float16).astype(np.float32)
    rows = np.flatnonzero(np.isfinite(values).all(axis=1)).astype(np.int64)
    bits.setflags(write=False)
    values.setflags(write=False)
    query = np.zeros(512, dtype=np.float32)
    direction = np.random.default_rng(5).standard_normal(512).astype(np.float32)
    outputs = []
    kernels = [_fused.logits_f16_bits] + ([_fused.logits_f16] if _fused.HAS_F16C else [])
    for kernel in kernels:
        out = np.empty(rows.size, dtype=np.float32)
        kernel(bits, rows, query, direction, np.float32(0.5), out)
        outputs.append(out)
    expected = np.empty(rows.size, dtype=np.float32)
    _fused.logits_f32(values, rows, query, direction, np.float32(0.5), expected)
    for out in outputs:
        np.testing.assert_array_equal(out, expected)


def test_bbox_and_source_filters(engine32: SearchEngine) -> None:
    query = engine32.encode_file(fixtures()["query"])
    box = (-118.2502, 34.0485, -118.2494, 34.0490)  # the western column of wgs84_gray.tif's tiles only
    hits = engine32.search(query, top_k=15, bbox=box)
    assert hits and all(h.tile.source.name == "wgs84_gray.tif" for h in hits)
    for hit in hits:
        west, south, east, north = hit.tile.lonlat_bounds
        assert west <= box[2] and east >= box[0] and south <= box[3] and north >= box[1]
    assert sorted(h.tile.window.as_tuple()[:2] for h in hits) == [(0, 0), (0, 22)]
    utm = engine32.search(query, top_k=15, bbox=(-118.31, 34.0, -118.28, 34.1))
    assert {h.tile.source.name for h in utm} == {"utm_rgb.tif", "rgba.tif", "uint16.tif", "nodata.tif"}
    assert engine32.search(query, top_k=5, bbox=(10.0, 10.0, 11.0, 11.0)) == []
    only = engine32.search(query, top_k=15, sources=[fixtures()["utm_rgb"], fixtures()["rasters"] / "sub"])
    assert len(only) == 8 and {h.tile.source.name for h in only} == {"utm_rgb.tif", "chip.png", "chip.jpg"}
    both = engine32.search(query, top_k=15, bbox=(-118.31, 34.0, -118.28, 34.1), sources=[fixtures()["utm_rgb"]])
    assert len(both) == 6
    naive = engine32.search_naive(query, top_k=15, bbox=box)
    assert [h.tile.id for h in naive] == [h.tile.id for h in hits]


def test_removed_tiles_are_never_returned(tmp_path: Path) -> None:
    library = Library.open(copy_of(reference("float32")[0], tmp_path / "lib"))
    with library.writer():
        library.delete_sources(library.source_ids_for(fixtures()["wgs84_gray"]))
    engine = SearchEngine(library, bundle(0))
    hits = engine.search(fixtures()["query"], top_k=20)
    assert len(hits) == 12 and all(h.tile.source.name != "wgs84_gray.tif" for h in hits)
    library.close()


def test_untrained_model_is_refused_unless_allowed() -> None:
    with pytest.raises(UntrainedModelError, match="--allow-untrained"):
        load_search_model(checkpoint(0), device="cpu")
    assert load_search_model(checkpoint(0), device="cpu", allow_untrained=True).info["trained"] is False
    assert load_search_model(checkpoint(0, trained=True), device="cpu").info["trained"] is True


def test_search_and_captions_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from dvan.cli.main import main

    path = str(copy_of(reference("float32")[0], tmp_path / "lib"))
    wav = str(fixtures()["query"])
    assert main(["search", path, "--wav", wav, "--model", str(checkpoint(0))]) == 2
    assert "not marked as trained" in capsys.readouterr().err
    assert main(["search", path, "--wav", wav, "--model", str(checkpoint(0)), "--allow-untrained", "--json",
                 "--top", "3"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["trained"] is False and len(result["hits"]) == 3 and result["searched"] == 16
    hit = result["hits"][0]
    assert {"probability", "source", "window", "lonlat_bounds", "bounds", "crs"} <= hit.keys()
    assert main(["search", path, "--wav", wav, "--model", str(checkpoint(0, trained=True)), "--top", "2",
                 "--bbox", "-118.31", "34.0", "-118.28", "34.1", "--source", str(fixtures()["utm_rgb"])]) == 0
    out = capsys.readouterr().out
    assert out.count("utm_rgb.tif") == 2 and "6 tiles scored" in out
    import make_audio

    recorded: list[float] = []

    def fake_microphone(seconds: float) -> np.ndarray:
        recorded.append(seconds)
        return make_audio.speechlike(seconds, seed=11)

    monkeypatch.setattr("dvan.cli.search.record_query", fake_microphone)
    assert main(["search", path, "--record", "2.5", "--model", str(checkpoint(0)), "--allow-untrained", "--json",
                 "--top", "15"]) == 0
    recorded_result = json.loads(capsys.readouterr().out)
    assert recorded == [2.5] and recorded_result["query"]["source"] == "recording"
    assert len(recorded_result["hits"]) == 15
    assert main(["captions", path, "--image", str(fixtures()["png"]), "--model", str(checkpoint(0)),
                 "--allow-untrained"]) == 2
    assert "no spoken captions" in capsys.readouterr().err
    assert main(["library", "add-captions", path, str(fixtures()["manifest"]), "--model", str(checkpoint(0)),
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["captions", path, "--image", str(fixtures()["png"]), "--model", str(checkpoint(0)),
                 "--allow-untrained", "--json", "--top", "2"]) == 0
    captions = json.loads(capsys.readouterr().out)
    assert len(captions["hits"]) == 2 and captions["hits"][0]["text"].startswith("caption number")
