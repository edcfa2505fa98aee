"""``dvan captions``: rank a library's spoken captions for an image (image -> audio search)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dvan.cli._library_common import add_model_options, prepare_projections
from dvan.errors import DvanError


def run(args: argparse.Namespace) -> int:
    """Rank the captions and print them."""
    from dvan.library.store import Library
    from dvan.search.engine import SearchEngine, check_top, load_search_model

    check_top(args.top)
    if args.image is not None and not args.image.is_file():
        what = "is a folder" if args.image.is_dir() else "is not a regular file (a pipe, socket or device)" \
            if args.image.exists() else "no such image file"
        raise DvanError(f"{args.image}: {what}; pass an image or raster file")
    bundle = load_search_model(args.model, args.device, args.allow_untrained)
    with Library.open(args.library) as library:
        engine = SearchEngine(library, bundle)
        prepare_projections(engine, quiet=args.json)
        image = args.tile if args.tile is not None else args.image
        hits = engine.captions(image, top_k=args.top)
    what = f"tile {args.tile}" if args.tile is not None else str(args.image)
    if args.json:
        print(json.dumps({"image": what, "model": str(bundle.checkpoint), "trained": engine.trained,
                          "hits": [h.to_dict() for h in hits]}, indent=2))
        return 0
    note = "" if engine.trained else "  [UNTRAINED MODEL: rankings are meaningless]"
    print(f"spoken captions for {what}{note}")
    print(f"{'rank':>4}  {'prob':>6}  {'audio':<24}  text")
    for hit in hits:
        caption = hit.caption
        print(f"{hit.rank:>4}  {hit.probability:6.4f}  {caption.audio.name:<24}  {caption.text or '-'}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``dvan captions``."""
    parser = subparsers.add_parser("captions", help="rank a library's spoken captions for an image")
    parser.add_argument("library", type=Path)
    image = parser.add_mutually_exclusive_group(required=True)
    image.add_argument("--image", type=Path, help="an image or raster file (read whole, downsampled to a tile)")
    image.add_argument("--tile", type=int, help="a tile of the library, by id (uses its stored features)")
    parser.add_argument("--top", type=int, default=10, help="how many captions to show (default 10)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    add_model_options(parser, results=True)
    parser.set_defaults(func=run)
