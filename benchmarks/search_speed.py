"""Search and import speed of the tile library, side by side in one run.

    .venv/bin/python benchmarks/search_speed.py [--sizes 10000 100000 1000000] [--naive-sizes 10000 100000]
        [--repeats 15] [--import-tiles 96] [--skip-import]

Measures, on this machine (recorded in the results with its load average):

1. naive per-pair fusion (equations 4-5 for every tile, from stored backbone features) vs the
   decomposed engine (``SearchEngine.search``), same library, same query: time and ratio;
2. the decomposed engine at each size: median time of scoring + top-10 for one query (the fused
   CPU kernel, and the torch backend for comparison), and memory: peak anonymous memory added by
   searching and the file pages mapped (measured in a fresh process per size);
3. one query end to end on the 100k library: 5 s WAV -> MFCC -> audio branch -> ranked tiles;
4. import throughput (tiles/s, ``import_paths`` with the model) vs backbone forward-only
   throughput on the same tiles (UC Merced images from ../shared/benchmark/ucm, one tile each).

The large libraries are synthetic (random backbone features, written straight into a library
folder with the library's own file formats: scoring time does not depend on what the features
show); they are cached in benchmarks/work/search-libraries. The model has random weights with
the paper's sizes (d4 = 512): speed does not depend on training.

Writes benchmarks/results/search_speed.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.machine import describe_machine  # noqa: E402
from dvan.config import paper_config  # noqa: E402
from dvan.library import Library, import_paths  # noqa: E402
from dvan.library.projection import gallery_key, model_label  # noqa: E402
from dvan.library.store import BACKBONE_FILE, RowFile  # noqa: E402
from dvan.model.checkpoint import save_checkpoint  # noqa: E402
from dvan.model.dvan import DVAN  # noqa: E402
from dvan.model.factory import ModelBundle, create_model  # noqa: E402
from dvan.search import SearchEngine  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "benchmarks" / "work" / "search-libraries"
UCM = ROOT.parent / "shared" / "benchmark" / "ucm" / "images"
SENTENCE = "many planes are parked next to a long building at the airport, beside a green field"


def model_checkpoint() -> Path:
    """A random-weight model with the paper's sizes (seeded; written once)."""
    path = WORK / "random-paper-model.safetensors"
    if not path.exists():
        torch.manual_seed(0)
        model = DVAN(paper_config())
        with torch.no_grad():
            model.fusion.classifier.weight.mul_(8.0)
        save_checkpoint(model, path, info={"trained": False, "purpose": "speed benchmark"})
    return path


def synthetic_library(size: int, bundle: ModelBundle, with_backbone: bool) -> Path:
    """A float16 library of ``size`` synthetic tiles in a 1000-column lon/lat grid (cached)."""
    path = WORK / f"synthetic-{size}{'-bb' if with_backbone else ''}"
    if (path / "library.sqlite").exists():
        return path
    shutil.rmtree(path, ignore_errors=True)
    library = Library.create(path, tile_size=256, gallery_dtype="float16")
    key, dim = gallery_key(bundle.model), bundle.config.fusion_dim
    gallery = library.gallery_file(key, dim)
    assert gallery is not None
    backbone = RowFile(path / BACKBONE_FILE, bundle.config.image_dim, np.float16)
    rng = np.random.default_rng(size)
    chunk = 65536
    with library.writer(), torch.inference_mode():
        source_id = library.begin_source(path / "synthetic.tif", 0, 0, "synthetic", 256, 0, size,
                                         {"width": 256 * 1000, "height": 256 * (size // 1000 + 1), "count": 3,
                                          "dtype": "uint8", "crs": "EPSG:4326"})
        for start in range(0, size, chunk):
            n = min(chunk, size - start)
            # efficientnet-lite0 features are non-negative averages of ReLU6 maps: a folded normal
            features = np.abs(rng.standard_normal((n, bundle.config.image_dim), dtype=np.float32) * 0.6)
            features16 = features.astype(np.float16)
            if with_backbone:
                backbone.write(start, features16)
            projection = bundle.model.gallery_projection(torch.from_numpy(features16.astype(np.float32)))
            gallery.write(start, projection.numpy())
            rows = []
            for row in range(start, start + n):
                col, line = row % 1000, row // 1000
                west, north = -120.0 + col * 0.001, 40.0 - line * 0.001
                rows.append((row, source_id, col * 256, line * 256, 256, 256, west, north - 0.001, west + 0.001,
                             north, west, north - 0.001, west + 0.001, north, 1.0, 0, 0))
            with library._transaction():
                library._db.executemany(
                    "INSERT INTO tiles (row, source_id, col_off, row_off, width, height, minx, miny, maxx, maxy, west,"
                    " south, east, north, valid_fraction, thumb_offset, thumb_size) VALUES (?, ?, ?, ?, ?, ?, ?, ?,"
                    " ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
                library._db.execute(
                    "INSERT INTO tiles_lonlat (id, west, east, south, north) SELECT id, west, east, south, north "
                    "FROM tiles WHERE row >= ? AND row < ?", (start, start + n))
                library._set_meta({"next_row": start + n, "gallery_rows": start + n,
                                   "generation": start + n})
            print(f"  synthetic {size}: {start + n} tiles", file=sys.stderr, flush=True)
        if not with_backbone:  # the naive path is not run on this one: an all-zero placeholder file
            with open(path / BACKBONE_FILE, "wb") as handle:
                handle.truncate(size * bundle.config.image_dim * 2)
        library.activate_gallery(key, dim, size, model_label(bundle))
        with library._transaction():
            library._db.execute("UPDATE sources SET status = 'complete', tiles = ? WHERE id = ?", (size, source_id))
    library.close()
    return path


def timed(fn: Any, repeats: int) -> tuple[float, list[float]]:
    """Median seconds of ``fn`` over ``repeats`` runs after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def speech_wav(path: Path) -> float:
    """A ~5 s spoken sentence (espeak-ng, en-us) at 16 kHz; returns its length in seconds."""
    import soundfile as sf

    if not path.exists():
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "170", "-w", str(path), SENTENCE], check=True)
    info = sf.info(str(path))
    return float(info.frames / info.samplerate)


def memory_probe(library: Path, checkpoint: Path, query_wav: Path) -> dict[str, float]:
    """Peak memory of searching ``library`` 5 times, measured in a fresh process."""
    code = r"""
import json, sys
def status():
    fields = {}
    for line in open("/proc/self/status"):
        key, value = line.split(":", 1)
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            fields[key] = int(value.split()[0]) / 1024
    return fields
from dvan.library import Library
from dvan.model.factory import create_model
from dvan.search import SearchEngine
bundle = create_model(checkpoint=sys.argv[2], device="cpu")
engine = SearchEngine(Library.open(sys.argv[1]), bundle)
query = engine.encode_file(sys.argv[3])
engine.library.live_rows()
before = status()
for _ in range(5):
    engine.search(query, top_k=10)
after = status()
print(json.dumps({"before": before, "after": after}))
"""
    env = dict(os.environ)
    result = subprocess.run([sys.executable, "-c", code, str(library), str(checkpoint), str(query_wav)],
                            capture_output=True, text=True, env=env, check=True)
    data = json.loads(result.stdout.strip().splitlines()[-1])
    before, after = data["before"], data["after"]
    return {"peak_rss_mb": after["VmHWM"], "rss_before_search_mb": before["VmRSS"],
            "anon_added_by_search_mb": after["RssAnon"] - before["RssAnon"],
            "file_pages_mapped_mb": after["RssFile"] - before["RssFile"]}


def import_benchmark(bundle: ModelBundle, count: int) -> dict[str, Any]:
    """Import throughput vs backbone forward-only throughput on the same UCM tiles."""
    from dvan.library.raster import open_raster, tile_windows

    classes = sorted(p for p in UCM.iterdir() if p.is_dir())
    files = []
    for index in range(count):
        images = sorted(classes[index % len(classes)].glob("*.jpg"))
        files.append(images[index // len(classes)])
    folder = WORK / "import-tiles"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for file in files:
        shutil.copy(file, folder / f"{file.parent.name}-{file.name}")
    backbone = bundle.backbone
    tiles = []
    for file in sorted(folder.iterdir()):
        with open_raster(file) as source:
            tiles.extend(source.read_tile(w)[0] for w in tile_windows(source.width, source.height, 256))
    backbone.features(tiles[:16])  # warm-up

    def forward() -> None:
        for start in range(0, len(tiles), 16):
            backbone.features(tiles[start:start + 16])

    def run_import() -> tuple[float, float]:
        target = WORK / "import-library"
        shutil.rmtree(target, ignore_errors=True)
        library = Library.create(target, tile_size=256)
        started, cpu = time.perf_counter(), time.process_time()
        report = import_paths(library, [folder], bundle=bundle, batch_size=16)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        library.close()
        assert report.tiles == len(tiles), report.summary()
        return elapsed, cpu

    forward_times, import_times, forward_cpu, import_cpu = [], [], [], []
    for _ in range(2):  # interleaved, so a change of load hits both
        started, cpu = time.perf_counter(), time.process_time()
        forward()
        forward_times.append(time.perf_counter() - started)
        forward_cpu.append(time.process_time() - cpu)
        wall, used = run_import()
        import_times.append(wall)
        import_cpu.append(used)
    forward_s, import_s = min(forward_times), min(import_times)
    return {"tiles": len(tiles), "source": "UC Merced JPEGs, 256 x 256, one tile each",
            "forward_only_tiles_per_s": len(tiles) / forward_s, "import_tiles_per_s": len(tiles) / import_s,
            "overhead_percent": (import_s / forward_s - 1) * 100, "forward_s": forward_times, "import_s": import_times,
            "cpu_overhead_percent": (min(import_cpu) / min(forward_cpu) - 1) * 100, "forward_cpu_s": forward_cpu,
            "import_cpu_s": import_cpu}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--naive-sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--import-tiles", type=int, default=96)
    parser.add_argument("--skip-import", action="store_true")
    parser.add_argument("--build-only", action="store_true", help="only build (and cache) the synthetic libraries")
    parser.add_argument("--note", default="", help="a remark stored with the results (e.g. about the machine's load)")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    machine = describe_machine()
    print(json.dumps(machine), file=sys.stderr)
    checkpoint = model_checkpoint()
    bundle = create_model(checkpoint=checkpoint, device="cpu")
    if args.build_only:
        for size in sorted(set(args.sizes)):
            synthetic_library(size, bundle, with_backbone=size in args.naive_sizes)
        return 0
    query_wav = WORK / "query-5s.wav"
    query_seconds = speech_wav(query_wav)
    results: dict[str, Any] = {"machine": machine, "model": "random weights, paper sizes (d3 1024, d4 512)",
                               "query_wav_seconds": query_seconds, "sizes": []}
    for size in sorted(set(args.sizes)):
        naive = size in args.naive_sizes
        path = synthetic_library(size, bundle, with_backbone=naive)
        library = Library.open(path)
        engine = SearchEngine(library, bundle)
        query = engine.encode_file(query_wav)
        row: dict[str, Any] = {"tiles": size, "gallery_mb": size * 512 * 2 / 1e6}
        fast_s, fast_all = timed(lambda: engine.search(query, top_k=10), args.repeats)  # noqa: B023
        row.update({"decomposed_ms": fast_s * 1000, "decomposed_min_ms": min(fast_all) * 1000,
                    "backend": engine.backend})
        engine.backend = "torch"
        torch_s, _ = timed(lambda: engine.search(query, top_k=10), max(3, args.repeats // 3))  # noqa: B023
        engine.backend = "numba"
        row["decomposed_torch_ms"] = torch_s * 1000
        if naive:
            naive_s, _ = timed(lambda: engine.search_naive(query, top_k=10), 3)  # noqa: B023
            same = [h.tile.id for h in engine.search_naive(query, top_k=10)] == \
                   [h.tile.id for h in engine.search(query, top_k=10)]
            row.update({"naive_ms": naive_s * 1000, "naive_over_decomposed": naive_s / fast_s,
                        "naive_top10_equal": same})
        if size == 100_000 or len(args.sizes) == 1:
            def end_to_end() -> None:
                engine.search(engine.encode_file(query_wav), top_k=10)  # noqa: B023

            e2e_s, _ = timed(end_to_end, max(5, args.repeats // 3))
            encode_s, _ = timed(lambda: engine.encode_file(query_wav), 5)  # noqa: B023
            row.update({"end_to_end_ms": e2e_s * 1000, "encode_query_ms": encode_s * 1000})
        row.update(memory_probe(path, checkpoint, query_wav))
        library.close()
        results["sizes"].append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    if not args.skip_import and UCM.is_dir():
        results["import"] = import_benchmark(bundle, args.import_tiles)
        print(json.dumps(results["import"]), file=sys.stderr, flush=True)
    results["load_average_after"] = list(os.getloadavg())
    if args.note:
        results["note"] = args.note
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "search_speed.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "search_speed.md").write_text(markdown(results))
    print(markdown(results))
    return 0


def markdown(results: dict[str, Any]) -> str:
    """The results as a Markdown report."""
    machine = results["machine"]
    lines = ["# Search speed", "",
             f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']} with "
             f"{machine['torch_threads']} threads, GPU: {machine['gpu'] or 'none'}. Load average before: "
             f"{', '.join(f'{v:.2f}' for v in machine['load_average'])}; after: "
             f"{', '.join(f'{v:.2f}' for v in results['load_average_after'])} (the machine is shared).", "",
             f"Model: {results['model']}. Libraries: synthetic, float16 gallery projections, memory-mapped. "
             "Times are medians for one query, scoring + top-10 with the tiles' metadata.", "",
             "| tiles | decomposed (fused kernel) | decomposed (torch) | naive per-pair | naive / decomposed | "
             "peak RSS | anon. memory added | gallery file | file pages mapped |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in results["sizes"]:
        naive = f"{row['naive_ms']:.0f} ms" if "naive_ms" in row else "-"
        ratio = f"{row['naive_over_decomposed']:.0f}x" if "naive_ms" in row else "-"
        lines.append(f"| {row['tiles']:,} | {row['decomposed_ms']:.1f} ms | {row['decomposed_torch_ms']:.1f} ms | "
                     f"{naive} | {ratio} | {row['peak_rss_mb']:.0f} MB | {row['anon_added_by_search_mb']:.1f} MB | "
                     f"{row['gallery_mb']:.0f} MB | {row['file_pages_mapped_mb']:.0f} MB |")
    e2e = next((r for r in results["sizes"] if "end_to_end_ms" in r), None)
    if e2e:
        lines += ["", f"End to end on {e2e['tiles']:,} tiles ({results['query_wav_seconds']:.1f} s espeak-ng WAV -> "
                  f"MFCC -> audio branch -> ranked top-10): {e2e['end_to_end_ms']:.0f} ms, of which encoding the "
                  f"query {e2e['encode_query_ms']:.0f} ms."]
    if "import" in results:
        imp = results["import"]
        lines += ["", f"Import of {imp['tiles']} tiles ({imp['source']}): {imp['import_tiles_per_s']:.1f} tiles/s; "
                  f"backbone forward only on the same tiles: {imp['forward_only_tiles_per_s']:.1f} tiles/s; "
                  f"overhead {imp['overhead_percent']:.0f} % in wall time, "
                  f"{imp.get('cpu_overhead_percent', float('nan')):.0f} % in CPU time (best of two interleaved runs "
                  "each; CPU time is the steadier measure on a shared machine)."]
    if results.get("note"):
        lines += ["", f"Note: {results['note']}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
