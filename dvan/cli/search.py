"""``dvan search``: rank a library's tiles for a spoken query (a WAV file or the microphone)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dvan.cli._library_common import StageBars, add_model_options, format_bounds

if TYPE_CHECKING:  # the parser is built without torch; run() imports what a search needs
    import numpy as np

    from dvan.search import TileHit


def record_query(seconds: float) -> np.ndarray:
    """``seconds`` of the default microphone at the query rate (sounddevice loads only when recording)."""
    from dvan.search.record import record_query as record

    return record(seconds)


def print_tile_hits(hits: list[TileHit], header: str, out: Any = None) -> None:
    """The ranked tiles as an aligned table."""
    out = out or sys.stdout
    print(header, file=out)
    if not hits:
        print("no tiles match (the library or the filtered set is empty)", file=out)
        return
    width = max(len(h.tile.source.name) for h in hits)
    print(f"{'rank':>4}  {'prob':>6}  {'tile':>6}  {'source':<{width}}  {'window x,y,w,h':<20}  lon/lat W,S,E,N",
          file=out)
    for hit in hits:
        window = ",".join(str(v) for v in hit.tile.window.as_tuple())
        print(f"{hit.rank:>4}  {hit.probability:6.4f}  {hit.tile.id:>6}  {hit.tile.source.name:<{width}}  "
              f"{window:<20}  {format_bounds(hit.tile.lonlat_bounds)}", file=out)


def run(args: argparse.Namespace) -> int:
    """Encode the query, prepare projections if needed, print the ranked tiles (and export them with ``--out``)."""
    from dvan.library.store import Library
    from dvan.progress import CancelToken
    from dvan.search.engine import SearchEngine, check_bbox, check_top, load_search_model
    from dvan.search.export import check_export_target, export_format, export_results, records_from_hits
    from dvan.search.record import RECORD_RATE

    check_top(args.top)
    if args.bbox:
        check_bbox(args.bbox)
    if args.out is not None:
        check_export_target(args.out)  # an unknown file type or a missing folder is refused before the search
    bundle = load_search_model(args.model, args.device, args.allow_untrained)
    with Library.open(args.library) as library:
        engine = SearchEngine(library, bundle, backend=args.backend)
        if engine.needs_projection:
            print("computing projections for this model from the stored features (once)", file=sys.stderr)
            bars = StageBars(disable=args.json)
            try:
                engine.prepare(bars, CancelToken())
            finally:
                bars.close()
        if args.record is not None:
            print(f"recording {args.record:g} s from the default microphone: speak now", file=sys.stderr)
            query = engine.encode_recording(record_query(args.record), RECORD_RATE)
        else:
            query = engine.encode_file(args.wav)
        started = time.perf_counter()
        hits = engine.search(query, top_k=args.top, bbox=tuple(args.bbox) if args.bbox else None,
                             sources=args.source)
        seconds = time.perf_counter() - started
        searched = int(engine.candidates(tuple(args.bbox) if args.bbox else None, args.source).size)
    model = str(bundle.checkpoint) if bundle.checkpoint else "unsaved"
    if args.out is not None:
        written = export_results(records_from_hits(hits), args.out, query=query.source)
        print(f"wrote {len(hits)} ranked tiles to {written} ({export_format(written)})", file=sys.stderr)
    if args.json:
        print(json.dumps({"query": {"source": query.source, "seconds": query.seconds, "truncated": query.truncated},
                          "model": model, "trained": engine.trained, "searched": searched,
                          "search_ms": seconds * 1000, "hits": [h.to_dict() for h in hits]}, indent=2))
        return 0
    note = "" if engine.trained else "  [UNTRAINED MODEL: rankings are meaningless]"
    header = (f"query {query.source}: {query.seconds:.1f} s of speech{' (truncated)' if query.truncated else ''}; "
              f"model {Path(model).name}; {searched} tiles scored in {seconds * 1000:.0f} ms{note}")
    print_tile_hits(hits, header)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``dvan search``."""
    parser = subparsers.add_parser("search", help="rank a library's tiles for a spoken query")
    parser.add_argument("library", type=Path)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--wav", type=Path, help="the spoken query (WAV, FLAC, OGG)")
    source.add_argument("--record", type=float, metavar="SECONDS", help="record the query from the microphone")
    parser.add_argument("--top", type=int, default=10, help="how many tiles to show (default 10)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--out", type=Path, metavar="FILE",
                        help="also write the ranked tiles with their footprints to FILE: .gpkg (GeoPackage), "
                             ".geojson (GeoJSON, WGS84) or .csv (WKT columns)")
    parser.add_argument("--bbox", type=float, nargs=4, metavar=("W", "S", "E", "N"),
                        help="only tiles intersecting this lon/lat box (WGS84 degrees)")
    parser.add_argument("--source", nargs="+", type=Path, metavar="FILE", help="only tiles of these source files")
    parser.add_argument("--backend", default="auto", choices=["auto", "numba", "torch"],
                        help="scoring backend (auto: fused CPU kernel; torch on CUDA and for under 50,000 tiles)")
    add_model_options(parser, results=True)
    parser.set_defaults(func=run)
