"""``dvan library``: create, add to, inspect, check and repair, prune, reproject and re-index tile libraries."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from dvan.cli._library_common import StageBars, add_model_options, optional_model
from dvan.data.manifest import ManifestEntry
from dvan.errors import InvalidValueError, LibraryError
from dvan.progress import CancelToken

#: Storage choices of gallery projections (the keys of dvan.library.store.GALLERY_DTYPES; numpy-free here).
GALLERY_DTYPE_NAMES = ("float16", "float32")
#: Default of --max-pixels (dvan.library.importer.DEFAULT_MAX_PIXELS, kept here so --help needs no rasterio).
DEFAULT_MAX_PIXELS = 5_000_000_000


def _create(args: argparse.Namespace) -> int:
    from dvan.library.store import Library

    library = Library.create(args.path, backbone=args.backbone, gallery_dtype=args.gallery_dtype,
                             tile_size=args.tile_size, overlap=args.overlap)
    print(f"created library {library.path} (backbone {args.backbone}, tiles {args.tile_size} px, overlap "
          f"{args.overlap} px, gallery {args.gallery_dtype})")
    library.close()
    return 0


def _add(args: argparse.Namespace) -> int:
    if not (math.isfinite(args.max_pixels) and args.max_pixels >= 1):
        raise InvalidValueError(f"--max-pixels {args.max_pixels:g}: give a number of pixels of at least 1")
    if args.ray is not None:
        from dvan.cluster.runtime import require_ray

        require_ray()  # before torch loads: a missing extra is a one-line error
    from dvan.library import Library, import_paths

    library = Library.open(args.path)
    bundle = optional_model(args.model, args.device)
    if bundle is None:
        print("no model given and no default model installed: storing backbone features only; gallery projections "
              "are computed before the first search", file=sys.stderr)
    runner = None
    bars = StageBars(disable=args.quiet)
    try:
        if args.ray is not None:
            from dvan.cluster.ray_import import ray_runner

            runner = ray_runner(args.ray, library.backbone_name, args.ray_workers)
            print(f"computing features on {len(runner.workers)} Ray worker(s): "
                  + ", ".join(f"{w['node']} ({w['device']})" for w in runner.workers), file=sys.stderr)
        report = import_paths(library, args.sources, bundle=bundle, backbone=runner, tile_size=args.tile_size,
                              overlap=args.overlap, batch_size=args.batch_size, progress=bars, cancel=CancelToken(),
                              max_pixels=int(args.max_pixels))
    finally:
        bars.close()
        if runner is not None:
            runner.close()
        library.close()
    for lost in runner.lost if runner is not None else []:
        print(f"worker lost: {lost}; its batch was computed again", file=sys.stderr)
    print(report.summary())
    return 1 if report.failed else 0


def _mount(args: argparse.Namespace) -> int:
    from dvan.cluster.mount import open_mount, write_mount

    write_mount(args.mount, args.shards)
    shards = open_mount(args.mount)
    try:
        tiles = [library.info()["tiles"] for library in shards]
    finally:
        for library in shards:
            library.close()
    print(f"mounted {len(shards)} shard(s), {sum(tiles)} tiles, in {args.mount}; search it with "
          f"'dvan search {args.mount} --wav QUERY'")
    return 0


def _info(args: argparse.Namespace) -> int:
    from dvan.library.store import Library

    with Library.open(args.path) as library:
        info = library.info()
        sources = library.sources()
    if args.json:
        info["source_files"] = [{"path": str(s.path), "status": s.status, "tiles": s.tiles, "crs": s.crs,
                                 "size": [s.width, s.height]} for s in sources]
        print(json.dumps(info, indent=2))
        return 0
    model = info["model"]
    print(f"library {info['path']}")
    print(f"backbone {info['backbone']}; tiles {info['tile_size']} px, overlap {info['overlap']} px; gallery "
          f"{info['gallery_dtype']}")
    print(f"{info['tiles']} tiles ({info['tiles_georeferenced']} georeferenced) from {info['sources']} source file(s)"
          + (f", {info['sources_incomplete']} incomplete (run 'dvan library add' again to finish)"
             if info["sources_incomplete"] else ""))
    if info["nodata_windows_skipped"]:
        print(f"{info['nodata_windows_skipped']} all-nodata window(s) not indexed")
    print("CRS: " + (", ".join(info["crs"]) or "-"))
    if info["lonlat_extent"]:
        print("extent (W,S,E,N): " + ",".join(f"{v:.5f}" for v in info["lonlat_extent"]))
    if model["gallery_key"]:
        state = "up to date" if model["up_to_date"] else f"{model['projected_rows']} of {info['rows']} rows projected"
        print(f"model: {model['checkpoint']} ({state})")
    else:
        print("model: none yet (projections are computed before the first search)")
    print(f"spoken captions: {info['captions']}" + (f" (model {info['captions_model']})" if info["captions"] else ""))
    print(f"disk: {info['disk_bytes'] / 1e6:.1f} MB" + (f"; {info['unused_rows']} unused rows of removed tiles"
                                                       if info["unused_rows"] else ""))
    if args.sources:
        for source in sources:
            print(f"  {source.status:9s} {source.tiles:6d} tiles  {source.path}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from dvan.library import Library, ensure_captions, ensure_gallery, import_paths
    from dvan.library.integrity import check_library

    bars = StageBars(disable=args.quiet)
    with Library.open(args.path, verify=False) as library:
        try:
            report = check_library(library, repair=args.repair, progress=bars, cancel=CancelToken())
        finally:
            bars.close()
        print(report.summary(library.path))
        if report.ok:
            return 0
        if not args.repair:
            print(f"repair what can be recomputed: dvan library check {library.path} --repair")
            return 1
        again = [p for p in report.removed_sources if p not in report.missing_sources]
        bundle = optional_model(args.model, args.device)
        bars = StageBars(disable=args.quiet)
        try:
            if again:
                print(f"importing {len(again)} source file(s) again from their rasters", file=sys.stderr)
                imported = import_paths(library, again, bundle=bundle, progress=bars, cancel=CancelToken(),
                                        max_pixels=None)
                print(imported.summary())
            if bundle is not None:
                ensure_gallery(library, bundle, bars, CancelToken())
                if library.captions():
                    ensure_captions(library, bundle, bars, CancelToken())
        finally:
            bars.close()
        print("repaired" + ("" if bundle is not None else "; projections are recomputed before the next search"))
    return 1 if report.missing_sources else 0


def _remove(args: argparse.Namespace) -> int:
    from dvan.library.store import Library

    with Library.open(args.path) as library:
        ids: list[int] = []
        for source in args.sources:
            found = library.source_ids_for(source)
            if not found:
                raise LibraryError(f"{source}: not a source of library {args.path}; see 'dvan library info {args.path} "
                                   "--sources'")
            ids.extend(found)
        with library.writer():
            removed = library.delete_sources(sorted(set(ids)))
    print(f"removed {len(set(ids))} source file(s) and {removed} tile(s)")
    return 0


def _reproject(args: argparse.Namespace) -> int:
    from dvan.library import Library, ensure_captions, ensure_gallery

    bundle = optional_model(args.model, args.device)
    if bundle is None:
        raise LibraryError("no model: pass --model CKPT (no default model is installed)")
    bars = StageBars(disable=args.quiet)
    with Library.open(args.path) as library:
        try:
            did = ensure_gallery(library, bundle, bars, CancelToken())
            if library.captions():
                did = ensure_captions(library, bundle, bars, CancelToken()) or did
        finally:
            bars.close()
    print("projections recomputed from stored features" if did else "projections already up to date for this model")
    return 0


def _reindex(args: argparse.Namespace) -> int:
    from dvan.library import Library, import_paths
    from dvan.model.factory import create_model

    bundle = None
    backbone = args.backbone
    if args.model is not None:
        bundle = create_model(checkpoint=args.model, device=args.device)
        backbone = bundle.config.backbone
    if backbone is None:
        raise LibraryError("say which backbone to re-index with: --backbone NAME or --model CKPT")
    bars = StageBars(disable=args.quiet)
    with Library.open(args.path) as library:
        with library.writer():
            paths = library.reset_backbone(backbone)
            try:
                report = import_paths(library, paths, bundle=bundle, progress=bars, cancel=CancelToken())
            finally:
                bars.close()
            library.finish_reindex()
    print(f"re-indexed with {backbone}")
    print(report.summary())
    return 1 if report.failed else 0


def _add_captions(args: argparse.Namespace) -> int:
    from dvan.library import Library, add_captions

    bundle = optional_model(args.model, args.device)
    if bundle is None:
        raise LibraryError("no model: pass --model CKPT (no default model is installed); spoken captions are "
                           "encoded by the model's audio branch")
    if (args.manifest is None) == (args.image is None):
        raise LibraryError("give either a MANIFEST or --image FILE with --audio WAV [WAV ...]")
    source: Path | list[ManifestEntry]
    if args.image is not None:
        if not args.audio:
            raise LibraryError("--image needs the spoken captions of that image: --audio WAV [WAV ...]")
        if not args.image.is_file():
            raise LibraryError(f"{args.image}: no such image file")
        source = [ManifestEntry(image=args.image.resolve(), audio=audio.resolve(), label=args.label or "",
                                split="test", text=args.text) for audio in args.audio]
    else:
        source = args.manifest
    bars = StageBars(disable=args.quiet)
    with Library.open(args.path) as library:
        try:
            report = add_captions(library, source, bundle, bars, CancelToken())
        finally:
            bars.close()
    print(report.summary())
    return 1 if report.failed else 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``dvan library`` and its sub-commands."""
    parser = subparsers.add_parser("library", help="create and manage tile libraries")
    commands = parser.add_subparsers(dest="library_command", metavar="ACTION", required=True)

    create = commands.add_parser("create", help="make a new, empty library folder")
    create.add_argument("path", type=Path)
    create.add_argument("--backbone", default="efficientnet-lite0", choices=["efficientnet-lite0", "vgg16-fc7"])
    create.add_argument("--tile-size", type=int, default=256, help="tile size in pixels (default 256)")
    create.add_argument("--overlap", type=int, default=0, help="overlap of neighbouring tiles in pixels (default 0)")
    create.add_argument("--gallery-dtype", default="float16", choices=GALLERY_DTYPE_NAMES,
                        help="storage of gallery projections: float16 (half the size) or float32 (exact)")
    create.set_defaults(func=_create)

    add = commands.add_parser("add", help="import raster files and folders (GeoTIFF, JPEG2000, PNG, JPEG, ...)")
    add.add_argument("path", type=Path, help="the library")
    add.add_argument("sources", nargs="+", type=Path, metavar="FILE_OR_FOLDER")
    add.add_argument("--tile-size", type=int, default=None, help="tile size in pixels (default: the library's)")
    add.add_argument("--overlap", type=int, default=None, help="tile overlap in pixels (default: the library's)")
    add.add_argument("--batch-size", type=int, default=16, help="tiles per backbone batch and commit")
    add.add_argument("--max-pixels", type=float, default=DEFAULT_MAX_PIXELS, metavar="N",
                     help=f"refuse rasters of more pixels than this (width x height; default {DEFAULT_MAX_PIXELS:.0e})")
    add.add_argument("--quiet", action="store_true", help="no progress bar")
    add.add_argument("--ray", metavar="ADDRESS", default=None,
                     help="run the image backbone on this Ray cluster's workers ('auto': a local one); needs "
                          "pip install \".[cluster]\"")
    add.add_argument("--ray-workers", type=int, default=None, metavar="N",
                     help="with --ray: backbone workers (default: one per GPU of the cluster, else one per CPU)")
    add_model_options(add, results=False)
    add.set_defaults(func=_add)

    mount = commands.add_parser("mount", help="list shard libraries in one mount file that search reads as one library")
    mount.add_argument("mount", type=Path, help="the mount file to write (JSON)")
    mount.add_argument("shards", nargs="+", type=Path, metavar="LIBRARY", help="shard libraries (same backbone)")
    mount.set_defaults(func=_mount)

    info = commands.add_parser("info", help="what a library holds")
    info.add_argument("path", type=Path)
    info.add_argument("--sources", action="store_true", help="list every source file")
    info.add_argument("--json", action="store_true", help="print as JSON (with every source file)")
    info.set_defaults(func=_info)

    check = commands.add_parser("check", help="verify the database, file sizes and NaN/Inf; --repair fixes what can "
                                "be recomputed")
    check.add_argument("path", type=Path)
    check.add_argument("--repair", action="store_true",
                       help="recompute damaged projections, re-import sources whose features or thumbnails are damaged")
    check.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_options(check, results=False)
    check.set_defaults(func=_check)

    remove = commands.add_parser("remove", help="remove source files (or every source under a folder)")
    remove.add_argument("path", type=Path)
    remove.add_argument("sources", nargs="+", type=Path, metavar="SOURCE")
    remove.set_defaults(func=_remove)

    reproject = commands.add_parser("reproject", help="recompute projections for another model (no raster reads)")
    reproject.add_argument("path", type=Path)
    reproject.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_options(reproject, results=False)
    reproject.set_defaults(func=_reproject)

    reindex = commands.add_parser("reindex", help="re-read every source with another backbone")
    reindex.add_argument("path", type=Path)
    reindex.add_argument("--backbone", choices=["efficientnet-lite0", "vgg16-fc7"], default=None)
    reindex.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_options(reindex, results=False)
    reindex.set_defaults(func=_reindex)

    captions = commands.add_parser("add-captions", help="add spoken captions from a manifest (image -> audio gallery)")
    captions.add_argument("path", type=Path)
    captions.add_argument("manifest", type=Path, nargs="?", help="JSON Lines manifest (see dvan.data.manifest)")
    captions.add_argument("--image", type=Path, help="instead of a manifest: the image the --audio files describe")
    captions.add_argument("--audio", type=Path, nargs="+", help="spoken captions of --image")
    captions.add_argument("--text", help="what the --audio files say (optional)")
    captions.add_argument("--label", help="class of --image (optional)")
    captions.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_options(captions, results=False)
    captions.set_defaults(func=_add_captions)
