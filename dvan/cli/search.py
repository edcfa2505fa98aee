"""``dvan search``: rank a library's tiles for a spoken query (a WAV file or the microphone) or typed words.

A spoken query is also transcribed (``heard: "..."``): in audio mode after its ranking is printed,
so recognition never delays the audio branch; in text and hybrid modes first, since they read it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dvan.cli._library_common import add_model_options, format_bounds, prepare_projections
from dvan.errors import ModelPackageMissingError

if TYPE_CHECKING:  # the parser is built without torch; run() imports what a search needs
    import numpy as np

    from dvan.cluster.sharded_search import ShardedSearch
    from dvan.search import TileHit
    from dvan.search.engine import SearchEngine


def record_query(seconds: float) -> np.ndarray:
    """``seconds`` of the default microphone at the query rate (sounddevice loads only when recording)."""
    from dvan.audio.record import record_query as record

    return record(seconds)


def print_tile_hits(hits: Sequence[TileHit], header: str, out: Any = None) -> None:
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


def speech_of(recording: np.ndarray) -> np.ndarray:
    """The recording cut to its speech, as the app cuts it (:func:`dvan.audio.vad.check_speech`).

    Raises:
        SilentAudioError: nothing was said.
    """
    from dvan.audio.record import RECORD_RATE
    from dvan.audio.vad import check_speech
    from dvan.errors import SilentAudioError

    check = check_speech(recording, RECORD_RATE)
    if not check.has_speech:
        raise SilentAudioError(f"recording: {check.message}")
    return check.trim(recording)


def _transcribe(args: argparse.Namespace, device: str, recording: Any) -> Any:
    """The transcript of the spoken query (a :class:`dvan.query.transcribe.Transcript`)."""
    from dvan.audio.record import RECORD_RATE
    from dvan.query.transcribe import get_recogniser

    recogniser = get_recogniser(device)
    if recording is not None:
        return recogniser.transcribe(recording, RECORD_RATE)
    return recogniser.transcribe_file(args.wav)


def _mode(args: argparse.Namespace, engine: SearchEngine | ShardedSearch) -> str:
    if args.text is not None:
        return "text"
    return engine.default_mode if args.mode == "auto" else args.mode


def run(args: argparse.Namespace) -> int:
    """Encode the query, prepare projections if needed, print the ranked tiles (and export them with ``--out``)."""
    if args.ray is not None:
        from dvan.cluster.runtime import require_ray

        require_ray()  # before torch loads: a missing extra is a one-line error
    from dvan.audio.record import RECORD_RATE
    from dvan.cluster.sharded_search import open_search
    from dvan.search.engine import check_bbox, check_top, load_search_model
    from dvan.search.export import check_export_target, export_format, export_results, records_from_hits

    check_top(args.top)
    if args.bbox:
        check_bbox(args.bbox)
    if args.out is not None:
        check_export_target(args.out)  # an unknown file type or a missing folder is refused before the search
    if args.text is not None and args.mode not in ("auto", "text"):
        print(f"dvan: error: --mode {args.mode} needs a spoken query (--wav or --record); typed words search in "
              "text mode: drop --mode or pass --mode text", file=sys.stderr)
        return 2
    bundle = load_search_model(args.model, args.device, args.allow_untrained)
    heard: Any = None
    heard_error: str | None = None
    with open_search(args.library, bundle, args.backend, args.ray, args.workers) as engine:
        prepare_projections(engine, quiet=args.json)
        mode = _mode(args, engine)
        recording = None
        if args.text is not None:
            query = engine.encode_text(args.text)
        elif args.record is not None:
            print(f"recording {args.record:g} s from the default microphone: speak now", file=sys.stderr)
            recording = speech_of(record_query(args.record))
            query = engine.encode_recording(recording, RECORD_RATE)
        else:
            query = engine.encode_file(args.wav)
        spoken = args.text is None
        bbox = tuple(args.bbox) if args.bbox else None
        searched = int(engine.candidates(bbox, args.source).size)
        model = str(bundle.checkpoint) if bundle.checkpoint else "unsaved"
        if spoken and mode == "hybrid" and not args.json:
            # The audio ranking never waits for the recogniser: it is printed first, then refined by the transcript.
            started = time.perf_counter()
            first = engine.search(query, top_k=args.top, bbox=bbox, sources=args.source)
            print_tile_hits(first, _header(query, spoken, "audio (refined below with the transcript)", model, searched,
                                           time.perf_counter() - started, engine.trained))
            print(file=sys.stdout, flush=True)
        if spoken and mode != "audio":
            # text and hybrid modes read the transcript; a missing recogniser is an error here
            heard = _transcribe(args, str(bundle.device), recording)
            query = engine.for_mode(mode, query, heard.text)
            if not args.json and mode == "hybrid":
                print(f'heard: "{heard.text}"', flush=True)
        started = time.perf_counter()
        hits = engine.search(query, top_k=args.top, bbox=bbox, sources=args.source)
        seconds = time.perf_counter() - started
    header = _header(query, spoken, mode, model, searched, seconds, engine.trained)
    if not args.json:
        print_tile_hits(hits, header)
        sys.stdout.flush()
    if spoken and heard is None and not args.no_transcript:
        # audio mode: the ranking above never waits for the recogniser; a missing one is a note, not a failure
        try:
            heard = _transcribe(args, str(bundle.device), recording)
        except ModelPackageMissingError as exc:
            heard_error = str(exc)
            print(f"dvan: no transcript: {exc}", file=sys.stderr)
    if args.out is not None:
        written = export_results(records_from_hits(hits), args.out, query=query.source,
                                 transcript=heard.text if heard is not None else None)
        print(f"wrote {len(hits)} ranked tiles to {written} ({export_format(written)})", file=sys.stderr)
    if args.json:
        print(json.dumps({"query": {"source": query.source, "seconds": query.seconds, "truncated": query.truncated,
                                    "mode": mode, "text": args.text},
                          "heard": heard.to_dict() if heard is not None else None,
                          "heard_error": heard_error,
                          "model": model, "trained": engine.trained, "searched": searched,
                          "search_ms": seconds * 1000, "hits": [h.to_dict() for h in hits]}, indent=2))
    elif heard is not None and not (spoken and mode == "hybrid"):
        print(f'heard: "{heard.text}"')
    return 0


def _header(query: Any, spoken: bool, mode: str, model: str, searched: int, seconds: float, trained: bool) -> str:
    """The line above a ranking: the query, the mode, the model, how many tiles were scored and how fast."""
    note = "" if trained else "  [UNTRAINED MODEL: rankings are meaningless]"
    what = (f"query {query.source}" if not spoken else
            f"query {query.source}: {query.seconds:.1f} s of speech{' (truncated)' if query.truncated else ''}")
    return f"{what}; mode {mode}; model {Path(model).name}; {searched} tiles scored in {seconds * 1000:.0f} ms{note}"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``dvan search``."""
    parser = subparsers.add_parser("search", help="rank a library's tiles for a spoken or typed query")
    parser.add_argument("library", type=Path, help="a library folder, or a mount file of shard libraries "
                        "('dvan library mount')")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--wav", type=Path, help="the spoken query (WAV, FLAC, OGG)")
    source.add_argument("--record", type=float, metavar="SECONDS", help="record the query from the microphone")
    source.add_argument("--text", metavar="WORDS", help="a typed query, e.g. \"airplanes parked at a terminal\"")
    parser.add_argument("--mode", default="auto", choices=["auto", "audio", "text", "hybrid"],
                        help="audio: the audio branch (the paper's path); text: the words through the text branch "
                             "(typed, or the transcript); hybrid: both; auto (default): the model's own choice, "
                             "made on validation (audio for a model without a text branch)")
    parser.add_argument("--no-transcript", action="store_true",
                        help="audio mode: do not run the speech recogniser after the ranking")
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
    parser.add_argument("--ray", metavar="ADDRESS", default=None,
                        help="a mount: score its shards on this Ray cluster ('auto': a local one; needs "
                             "pip install \".[cluster]\")")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="a mount without --ray: local processes scoring shards (default: one per shard, at most "
                             "one per CPU)")
    add_model_options(parser, results=True)
    parser.set_defaults(func=run)
