"""Training collections for the Training tab: a manifest, or a folder of images with spoken captions beside them.

Folder convention (no Qt, no torch)::

    airport/airport01.jpg          the image; its label is its folder's name ("airport")
    airport/airport01.wav          spoken captions: the image's stem, alone or followed by _ or -
    airport/airport01_2.flac         and anything (WAV, FLAC or OGG)
    airport/airport01.txt          optional: the caption texts, one per line, in the audio files' sorted order

Each image gets a split by a stable hash of its path relative to the folder (80 % train, 10 % val,
10 % test), so adding images never moves the old ones to another split. The manifest is written
as ``dvan_collection.jsonl`` in the folder (see :mod:`dvan.data.manifest`).

The training log reader (:func:`read_training_log`) turns ``train_log.jsonl`` into the curves the
Training tab draws.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dvan.audio.io import AUDIO_SUFFIXES
from dvan.data.manifest import ManifestEntry, read_manifest, write_manifest
from dvan.errors import ManifestError
from dvan.library.files import IMAGE_SUFFIXES

FOLDER_MANIFEST = "dvan_collection.jsonl"


def split_of(relative: str) -> str:
    """Stable split of an image from its relative path: 80 % train, 10 % val, 10 % test."""
    bucket = int(hashlib.sha1(relative.encode("utf-8")).hexdigest()[:8], 16) % 10
    return "val" if bucket == 0 else "test" if bucket == 1 else "train"


def _captions_of(image: Path, files: list[Path]) -> list[Path]:
    stem = image.stem
    return sorted(f for f in files if f.suffix.lower() in AUDIO_SUFFIXES
                  and (f.stem == stem or f.stem.startswith(stem + "_") or f.stem.startswith(stem + "-")))


@dataclass
class CollectionImage:
    """One image of a collection with its spoken captions."""

    image: Path
    label: str
    split: str
    audio: list[Path] = field(default_factory=list)
    texts: list[str | None] = field(default_factory=list)


def scan_folder(folder: str | Path) -> list[CollectionImage]:
    """Images under ``folder`` (recursively) with the spoken captions beside them."""
    root = Path(folder).resolve()
    if not root.is_dir():
        raise ManifestError(f"{root}: not a folder; choose a folder of images with spoken captions beside them")
    images: list[CollectionImage] = []
    for directory in sorted({p.parent for p in root.rglob("*") if p.is_file()} | {root}):
        if any(part.startswith(".") for part in directory.relative_to(root).parts):
            continue
        files = sorted(p for p in directory.iterdir() if p.is_file())
        for image in (f for f in files if f.suffix.lower() in IMAGE_SUFFIXES):
            audio = _captions_of(image, files)
            text_file = image.with_suffix(".txt")
            lines = text_file.read_text(encoding="utf-8").splitlines() if text_file.is_file() else []
            texts: list[str | None] = [lines[i].strip() or None if i < len(lines) else None for i in range(len(audio))]
            label = directory.name if directory != root else image.stem.rstrip("0123456789_-") or image.stem
            images.append(CollectionImage(image=image, label=label, split=split_of(str(image.relative_to(root))),
                                          audio=audio, texts=texts))
    return images


def folder_manifest(folder: str | Path) -> Path:
    """Write the manifest of a folder collection and return its path.

    Raises:
        ManifestError: no image in the folder has a spoken caption.
    """
    root = Path(folder).resolve()
    entries = [ManifestEntry(image=item.image, audio=audio, label=item.label, split=item.split, text=text)
               for item in scan_folder(root) for audio, text in zip(item.audio, item.texts, strict=True)]
    if not entries:
        raise ManifestError(f"{root}: no image has a spoken caption beside it (e.g. a.jpg with a.wav or a_1.wav); "
                            "record captions in the Training tab or generate them from text")
    return write_manifest(root / FOLDER_MANIFEST, entries)


def load_collection(path: str | Path) -> tuple[Path | None, list[CollectionImage]]:
    """A collection from a manifest or a folder: (manifest path or None when nothing is captioned yet, images)."""
    path = Path(path)
    if path.is_dir():
        images = scan_folder(path)
        manifest = folder_manifest(path) if any(i.audio for i in images) else None
        return manifest, images
    entries = read_manifest(path)
    by_image: dict[Path, CollectionImage] = {}
    for entry in entries:
        item = by_image.setdefault(entry.image, CollectionImage(entry.image, entry.label, entry.split))
        item.audio.append(entry.audio)
        item.texts.append(entry.text)
    return path, list(by_image.values())


def next_caption_path(image: Path, suffix: str = ".wav") -> Path:
    """A new file name for a caption recorded for ``image``, beside it: ``<stem>_rec<N>.wav``."""
    number = 1
    while (candidate := image.with_name(f"{image.stem}_rec{number}{suffix}")).exists():
        number += 1
    return candidate


def add_caption_to_manifest(manifest: Path, image: CollectionImage, audio: Path, text: str | None = None) -> None:
    """Append one spoken caption of ``image`` to a manifest (rewritten atomically)."""
    entries = read_manifest(manifest, check_files=False) if manifest.is_file() else []
    entries.append(ManifestEntry(image=image.image, audio=audio, label=image.label, split=image.split, text=text))
    write_manifest(manifest, entries)


@dataclass
class TrainingCurves:
    """Curves read from a training log."""

    steps: list[int] = field(default_factory=list)
    step_loss: list[float] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)
    epoch_step: list[int] = field(default_factory=list)
    epoch_loss: list[float] = field(default_factory=list)
    val: list[dict[str, Any]] = field(default_factory=list)
    ended: dict[str, Any] | None = None
    started: dict[str, Any] | None = None

    def val_series(self, key: str) -> list[float]:
        """One validation metric per epoch (NaN where missing)."""
        values = [v.get(key) for v in self.val]
        return [float(x) if isinstance(x, (int, float)) else float("nan") for x in values]


def read_training_log(path: str | Path) -> TrainingCurves:
    """Parse ``train_log.jsonl`` (lines cut by a kill are skipped; a resumed run's redone steps replace old ones)."""
    curves = TrainingCurves()
    path = Path(path)
    if not path.is_file():
        return curves
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        event = record.get("event")
        if event == "start":
            curves.started = record
        elif event == "step" and isinstance(record.get("loss"), (int, float)):
            while curves.steps and curves.steps[-1] >= record["step"]:
                curves.steps.pop()
                curves.step_loss.pop()
            curves.steps.append(int(record["step"]))
            curves.step_loss.append(float(record["loss"]))
        elif event == "epoch":
            while curves.epochs and curves.epochs[-1] >= record["epoch"]:
                curves.epochs.pop()
                curves.epoch_step.pop()
                curves.epoch_loss.pop()
                curves.val.pop()
            curves.epochs.append(int(record["epoch"]))
            curves.epoch_step.append(int(record.get("step", 0)))
            loss = record.get("loss")
            curves.epoch_loss.append(float(loss) if isinstance(loss, (int, float)) else float("nan"))
            curves.val.append(dict(record.get("val") or {}))
        elif event == "end":
            curves.ended = record
    return curves
