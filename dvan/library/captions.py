"""Spoken captions held by a library: the gallery of image -> audio search.

Each caption keeps its audio file, its image, and the query projection ``q = W_S V_S`` of its
audio under the active model (``captions-<key>.f32``). The audio branch is part of the model,
so a new model re-reads the audio files (they are referenced, not copied); captions whose audio
is gone by then are reported and dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dvan.data.manifest import ManifestEntry, read_manifest
from dvan.errors import AudioError
from dvan.library.projection import captions_key, model_label
from dvan.library.store import Library
from dvan.model.factory import ModelBundle
from dvan.progress import CancelToken, Progress, ProgressCallback, no_progress

#: Audio files encoded per batch.
CAPTION_BATCH = 16


@dataclass
class CaptionReport:
    """What adding captions did."""

    added: int = 0
    unchanged: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)
    reprojected: int = 0

    def summary(self) -> str:
        """A few human-readable lines."""
        lines = [f"{self.added} spoken caption(s) added, {self.unchanged} already in the library"]
        if self.reprojected:
            lines.append(f"{self.reprojected} caption(s) re-encoded for the new model")
        lines += [f"FAILED {path}: {reason}" for path, reason in self.failed]
        return "\n".join(lines)


@torch.inference_mode()
def encode_audio(bundle: ModelBundle, paths: Sequence[Path]) -> tuple[np.ndarray, list[tuple[Path, str]]]:
    """Query projections (n_ok, d4) of audio files, and (file, reason) of those that failed.

    Rows are in the order of ``paths`` with failures left out.
    """
    features = []
    failed: list[tuple[Path, str]] = []
    for path in paths:
        try:
            features.append(bundle.audio_frontend.features(path))
        except AudioError as exc:
            failed.append((path, str(exc)))
    dim = bundle.config.fusion_dim
    if not features:
        return np.zeros((0, dim), dtype=np.float32), failed
    bundle.model.eval()
    inputs = bundle.audio_frontend.batch(features).to(bundle.device)
    projections = bundle.model.query_projection(inputs).float().cpu().numpy()
    return projections, failed


def ensure_captions(library: Library, bundle: ModelBundle, progress: ProgressCallback = no_progress,
                    cancel: CancelToken | None = None, report: CaptionReport | None = None) -> bool:
    """Re-encode the library's captions when they belong to another model.

    Returns:
        Whether anything was computed.
    """
    key = captions_key(bundle.model)
    dim = bundle.config.fusion_dim
    with library.writer():
        if library.meta("captions_key") == key:
            return False
        captions = library.captions()
        target = library.captions_file(key, dim)
        assert target is not None
        target.path.unlink(missing_ok=True)
        target.path.touch()
        kept: list[int] = []
        for start in range(0, len(captions), CAPTION_BATCH):
            if cancel is not None:
                cancel.raise_if_cancelled()
            batch = captions[start:start + CAPTION_BATCH]
            projections, failed = encode_audio(bundle, [c.audio for c in batch])
            bad = {path for path, _ in failed}
            good = [c for c in batch if c.audio not in bad]
            for caption, row in zip(good, projections, strict=True):
                target.write(caption.row, row[None])
                kept.append(caption.row)
            if report is not None:
                report.failed.extend(failed)
                report.reprojected += len(good)
            progress(Progress("captions", min(len(captions), start + CAPTION_BATCH), len(captions),
                              "re-encoding spoken captions for the new model"))
        rows = int(library.meta("next_caption_row"))
        with open(target.path, "r+b") as handle:  # exactly one row per caption row, dropped ones zero
            handle.truncate(rows * target.row_bytes)
        library.activate_captions(key, dim, model_label(bundle), rows=np.array(kept, dtype=np.int64))
        return True


def add_captions(library: Library, source: str | Path | Sequence[ManifestEntry], bundle: ModelBundle,
                 progress: ProgressCallback = no_progress, cancel: CancelToken | None = None) -> CaptionReport:
    """Add spoken captions (from a manifest file or entries) with their query projections.

    Captions already held (same audio and image files) are skipped. Audio that cannot be read
    is reported by name and reason; the rest is added.

    Raises:
        ManifestError: the manifest is invalid.
        Cancelled: through ``cancel``; batches added so far stay.
    """
    entries = read_manifest(source) if isinstance(source, (str, Path)) else list(source)
    report = CaptionReport()
    with library.writer():
        ensure_captions(library, bundle, progress, cancel, report)
        held = library.caption_keys()
        todo = []
        for entry in entries:
            key = (str(Path(entry.audio).resolve()), str(Path(entry.image).resolve()))
            if key in held:
                report.unchanged += 1
            else:
                held.add(key)
                todo.append(entry)
        progress(Progress("captions", 0, len(todo), "encoding spoken captions"))
        for start in range(0, len(todo), CAPTION_BATCH):
            if cancel is not None:
                cancel.raise_if_cancelled()
            batch = todo[start:start + CAPTION_BATCH]
            projections, failed = encode_audio(bundle, [e.audio for e in batch])
            report.failed.extend(failed)
            bad = {path for path, _ in failed}
            good = [e for e in batch if e.audio not in bad]
            records: list[dict[str, Any]] = []
            for entry in good:
                stat = Path(entry.audio).stat()
                records.append({"audio": str(Path(entry.audio).resolve()), "image": str(Path(entry.image).resolve()),
                                "label": entry.label or None, "split": entry.split, "text": entry.text,
                                "speaker": entry.speaker, "audio_size": stat.st_size,
                                "audio_mtime_ns": stat.st_mtime_ns})
            library.commit_captions(records, projections)
            report.added += len(records)
            progress(Progress("captions", min(len(todo), start + CAPTION_BATCH), len(todo), "encoding spoken captions"))
    return report
