"""The app's long jobs as plain, picklable functions (no Qt), run in a child process by :mod:`app.worker`.

Each takes paths and settings (never open objects), opens what it needs itself, and takes the
usual ``progress`` and ``cancel`` keyword arguments. Running them in their own process keeps
their Python work off the GUI process's GIL: an import or a training run then cannot stall the
event loop, whatever it does (measured in ``tests/gui/test_app_library.py``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.types import FileReport, ImportOutcome
from dvan.errors import Cancelled
from dvan.progress import CancelToken, ProgressCallback, no_progress

#: Models loaded in this job server, by (checkpoint, its size and time, device, backbone weights).
_BUNDLES: dict[tuple[str, int, int, str, str], Any] = {}


def _search_bundle(model: str | Path | None, device: str, backbone_weights: str | Path | None) -> Any:
    """The trained model (kept for the server's next jobs), or None when there is none.

    Without a trained model, imported tiles get backbone features only; their projections are
    computed once a trained model is active.
    """
    from dvan.errors import CheckpointError
    from dvan.resources import default_model_path
    from dvan.search.engine import load_search_model

    path = Path(model) if model else default_model_path()
    try:
        stat = path.stat()
    except OSError:
        return None
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, device, str(backbone_weights or ""))
    if key not in _BUNDLES:
        try:
            bundle = load_search_model(path, device=device)
        except CheckpointError:
            return None
        bundle.backbone_weights = Path(backbone_weights) if backbone_weights else None
        _BUNDLES.clear()
        _BUNDLES[key] = bundle
    return _BUNDLES[key]


def convert_report(result: Any, tiles_of: Callable[[Path], int] | None = None) -> ImportOutcome:
    """dvan's import report as the per-file rows the Library tab shows.

    Args:
        result: :class:`dvan.library.importer.ImportReport`.
        tiles_of: the library's tile count of a source file, for re-indexed and resumed files (whose
            count dvan's report does not give; their row showed an empty count).
    """
    files: list[FileReport] = []
    count = tiles_of or (lambda _: 0)
    for path, tiles in result.added:
        files.append(FileReport(Path(path), "imported", int(tiles), "new file"))
    for path in result.reindexed:
        files.append(FileReport(Path(path), "imported", count(Path(path)), "changed since the last import: re-indexed"))
    for path in result.resumed:
        files.append(FileReport(Path(path), "imported", count(Path(path)), "interrupted import completed"))
    for path in result.unchanged:
        files.append(FileReport(Path(path), "skipped", 0, "already in the library, unchanged"))
    for path, reason in result.failed:
        files.append(FileReport(Path(path), "failed", 0, str(reason)))
    return ImportOutcome(files=files, tiles=int(result.tiles), seconds=float(result.seconds))


def import_job(library: str | Path, paths: list[str], model: str | Path | None, device: str,
               backbone_weights: str | Path | None = None, *, progress: ProgressCallback = no_progress,
               cancel: CancelToken | None = None) -> ImportOutcome:
    """Import files and folders into a library (tiles, features, and the trained model's projections).

    A cancelled import returns a report with ``cancelled`` set (tiles committed so far stay).
    """
    from dvan.library.importer import import_paths
    from dvan.library.store import Library

    started = time.perf_counter()
    bundle = _search_bundle(model, device, backbone_weights)
    with Library.open(library) as opened:
        try:
            result = import_paths(opened, list(paths), bundle=bundle, progress=progress, cancel=cancel)
        except Cancelled:
            return ImportOutcome(seconds=time.perf_counter() - started, cancelled=True)
        return convert_report(result, lambda path: int(opened.rows_of_sources([path]).size))


def prewarm(model: str | Path | None, device: str, backbone_weights: str | Path | None = None, *,
            progress: ProgressCallback = no_progress, cancel: CancelToken | None = None) -> bool:
    """Import what the jobs need and load the trained model, so the first real job starts at once."""
    import dvan.library.captions  # noqa: F401
    import dvan.library.importer  # noqa: F401
    import dvan.train.loop  # noqa: F401

    return _search_bundle(model, device, backbone_weights) is not None


def captions_job(library: str | Path, manifest: str | Path, model: str | Path | None, device: str,
                 backbone_weights: str | Path | None = None, *, progress: ProgressCallback = no_progress,
                 cancel: CancelToken | None = None) -> ImportOutcome:
    """Add a manifest's spoken captions to a library (encoded by the trained model), as per-file rows."""
    from dvan.errors import UntrainedModelError
    from dvan.library.captions import add_captions
    from dvan.library.store import Library

    started = time.perf_counter()
    bundle = _search_bundle(model, device, backbone_weights)
    if bundle is None:
        raise UntrainedModelError("spoken captions are encoded by the active model, and there is no trained model; "
                                  "choose one in Settings or train one in the Training tab")
    with Library.open(library) as opened:
        report = add_captions(opened, manifest, bundle, progress, cancel)
    files = [FileReport(Path(manifest), "imported", 0, f"{report.added} spoken caption(s) added, "
                                                       f"{report.unchanged} already in the library")]
    files += [FileReport(Path(path), "failed", 0, str(reason)) for path, reason in report.failed]
    return ImportOutcome(files=files, tiles=0, seconds=time.perf_counter() - started)


def demo_job(target: str | Path, model: str | Path | None, device: str, *, progress: ProgressCallback = no_progress,
             cancel: CancelToken | None = None) -> Path:
    """Build (or complete) the demo library; with a trained model its projections are stored too."""
    from dvan.library.demo import ensure_demo_library

    bundle = _search_bundle(model, device, None)
    return Path(ensure_demo_library(target, bundle, progress, cancel))


def reproject_job(library: str | Path, model: str | Path | None, device: str,
                  backbone_weights: str | Path | None = None, *, progress: ProgressCallback = no_progress,
                  cancel: CancelToken | None = None) -> bool:
    """Compute a library's gallery and caption projections for a model; True when anything was computed."""
    from dvan.library.store import Library
    from dvan.search.engine import SearchEngine, load_search_model

    bundle = _search_bundle(model, device, backbone_weights)
    if bundle is None:
        bundle = load_search_model(Path(model) if model else None, device=device)  # raises the reason
    with Library.open(library) as opened:
        return bool(SearchEngine(opened, bundle).prepare(progress, cancel))


def fine_tune(manifest: str | Path, preset: str, epochs: int, out_dir: str | Path, base: str | Path | None,
              device: str, resume: bool, backbone_weights: str | None = None, batch_size: int | None = None,
              lr: float | None = None, log_every: int | None = None, *, progress: ProgressCallback = no_progress,
              cancel: CancelToken | None = None) -> Any:
    """Fine-tune the active model ``base`` on a collection with :func:`dvan.train.loop.train`.

    The model keeps ``base``'s architecture and starts from its weights; the recipe (loss,
    augmentation, schedule) is the preset's. Without ``base`` the preset's own model is trained
    from scratch.
    """
    from dvan.model.checkpoint import read_validated_metadata
    from dvan.train.config import make_train_config
    from dvan.train.loop import train

    overrides: dict[str, Any] = {"epochs": epochs}
    for key, value in (("batch_size", batch_size), ("lr", lr), ("log_every", log_every)):
        if value is not None:
            overrides[key] = value
    config = make_train_config(preset, **overrides)
    init = None
    if base is not None and Path(base).is_file():
        model_config, _ = read_validated_metadata(base)
        config = dataclasses.replace(config, model=model_config)
        init = Path(base)
    return train(manifest, config, out_dir, progress=progress, cancel=cancel, device=device, resume=resume,
                 backbone_weights=backbone_weights or None, init_checkpoint=init)


def evaluate_val(checkpoint: str | Path, manifest: str | Path, device: str, *,
                 progress: ProgressCallback = no_progress, cancel: CancelToken | None = None) -> dict[str, Any]:
    """Validation summary of a checkpoint on a manifest's val split."""
    from dvan.eval.evaluate import evaluate, summary

    return dict(summary(evaluate(checkpoint, manifest, split="val", device=device, progress=progress, cancel=cancel)))
