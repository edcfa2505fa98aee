"""``dvan demo``: build the embedded demo library on first run and search it with the demo queries."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dvan.cli._library_common import StageBars, prepare_projections
from dvan.cli.search import print_tile_hits
from dvan.errors import CheckpointError
from dvan.resources import default_model_path


def run(args: argparse.Namespace) -> int:
    """Check the model, build the library if needed, and print ranked tiles for each demo query."""
    from dvan.library.demo import demo_library_path, demo_queries, ensure_demo_library
    from dvan.library.store import Library
    from dvan.progress import CancelToken
    from dvan.search.engine import SearchEngine, load_search_model

    if args.model is None and not default_model_path().is_file():
        print(f"dvan demo: the default model is not installed ({default_model_path()}), so there is nothing "
              "to search with; train it with 'dvan train' (it is written there) or pass --model CKPT. "
              "No results are shown without a trained model.", file=sys.stderr)
        return 2
    try:
        bundle = load_search_model(args.model, args.device, args.allow_untrained)
    except CheckpointError as exc:
        print(f"dvan demo: {exc}", file=sys.stderr)
        return 2
    queries = demo_queries()
    if args.query:
        wanted = Path(args.query)
        queries = [wanted] if wanted.is_file() else [q for q in queries if q.stem == args.query]
        if not queries:
            names = ", ".join(q.stem for q in demo_queries())
            print(f"dvan demo: no demo query {args.query!r}; use one of {names} or a WAV file", file=sys.stderr)
            return 2
    path = args.library or demo_library_path()
    bars = StageBars(disable=args.quiet)
    try:
        ensure_demo_library(path, bundle, bars, CancelToken())
    finally:
        bars.close()
    with Library.open(path) as library:
        engine = SearchEngine(library, bundle)
        prepare_projections(engine, quiet=True)
        print(f"demo library {path}: {library.info()['tiles']} tiles (UC Merced test images; coordinates are "
              "illustrative)")
        note = "" if engine.trained else "  [UNTRAINED MODEL: rankings are meaningless]"
        for wav in queries:
            hits = engine.search(engine.encode_file(wav), top_k=args.top)
            print()
            print_tile_hits(hits, f"query {wav.name}{note}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``dvan demo``."""
    parser = subparsers.add_parser("demo", help="search the embedded demo library with spoken demo queries")
    parser.add_argument("--query", help="one demo query by name (airplanes, baseball, ...) or a WAV file; "
                                        "default: every demo query")
    parser.add_argument("--top", type=int, default=5, help="tiles shown per query (default 5)")
    parser.add_argument("--library", type=Path, default=None,
                        help="where the demo library lives (default $DVAN_DEMO_LIBRARY or "
                             "~/.local/share/dvan/demo-library)")
    parser.add_argument("--model", metavar="CKPT", type=Path, default=None,
                        help=f"model checkpoint (default: the embedded model {default_model_path()})")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    parser.add_argument("--allow-untrained", action="store_true",
                        help="show results of a model not marked trained (meaningless rankings; for testing)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar while building the library")
    parser.set_defaults(func=run)
