"""The collection manifest: the public contract between dvan and anyone's datasets.

JSON Lines, one spoken caption per line::

    {"image": "images/a.jpg", "audio": "audio/a_0.wav", "label": "airplane", "split": "train",
     "text": "many planes parked next to a long terminal", "speaker": "en-us+m3"}

``image``, ``audio``, ``label`` and ``split`` are required; ``text`` and ``speaker`` optional.
Paths are relative to the manifest's folder (absolute paths are accepted too). ``split`` is one of
``train``, ``val``, ``test``. Validation is strict, and every error names the line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dvan.errors import DvanError, ManifestError

SPLITS = ("train", "val", "test")
REQUIRED = ("image", "audio", "label", "split")
OPTIONAL = ("text", "speaker")


@dataclass(frozen=True)
class ManifestEntry:
    """One spoken caption of one image.

    Attributes:
        image: absolute path of the image.
        audio: absolute path of the spoken caption.
        label: class name of the image.
        split: "train", "val" or "test".
        text: the caption's words, when known.
        speaker: the voice or person who spoke it, when known.
        line: 1-based line number in the manifest (for messages).
    """

    image: Path
    audio: Path
    label: str
    split: str
    text: str | None = None
    speaker: str | None = None
    line: int = 0


def json_object_line(line: str, where: str, error: type[DvanError]) -> dict[str, Any]:
    """One line of a JSON Lines file (a manifest, a caption file) as the JSON object it must be.

    Raises:
        error: the line is not JSON, or not an object; the message starts with ``where``.
    """
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise error(f"{where}: not valid JSON ({exc.msg}); each line must be one JSON object") from exc
    if not isinstance(record, dict):
        raise error(f"{where}: expected a JSON object, got {type(record).__name__}")
    return record


def read_manifest(path: str | Path, check_files: bool = True) -> list[ManifestEntry]:
    """Read and validate a manifest.

    Args:
        path: the ``.jsonl`` file.
        check_files: whether every image and audio file must exist.

    Raises:
        ManifestError: the file is missing or a line is invalid; the message names the line.
    """
    path = Path(path)
    if not path.is_file():
        what = "a folder" if path.is_dir() else "not a regular file" if path.exists() else "no such manifest"
        raise ManifestError(f"{path}: {what}; pass a manifest file (write one, see docs, or create it with "
                            "'dvan speak')")
    root = path.parent
    entries: list[ManifestEntry] = []
    image_labels: dict[Path, str] = {}
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed below; lines are decoded one by one to name a bad one)
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read the manifest ({exc.strerror}); check its permissions") from exc
    with handle:
        for number, data in enumerate(handle, start=1):
            where = f"{path}, line {number}"
            try:
                raw = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ManifestError(f"{where}: not UTF-8 text (byte 0x{data[exc.start]:02x} at column {exc.start + 1}); "
                                    "save the manifest as UTF-8") from exc
            if not raw.strip():
                continue
            record = json_object_line(raw, where, ManifestError)
            missing = [k for k in REQUIRED if not record.get(k)]
            if missing:
                raise ManifestError(f"{where}: missing {', '.join(missing)}; every line needs {', '.join(REQUIRED)}")
            unknown = sorted(set(record) - set(REQUIRED) - set(OPTIONAL))
            if unknown:
                raise ManifestError(f"{where}: unknown field(s) {unknown}; allowed: {', '.join(REQUIRED + OPTIONAL)}")
            for key in record:
                if record[key] is not None and not isinstance(record[key], str):
                    raise ManifestError(f"{where}: field {key!r} must be a string")
            if record["split"] not in SPLITS:
                raise ManifestError(f"{where}: unknown split {record['split']!r}; use one of {', '.join(SPLITS)}")
            image = (root / record["image"]).resolve()
            audio = (root / record["audio"]).resolve()
            if check_files:
                for kind, target in (("image", image), ("audio", audio)):
                    if not target.is_file():
                        state = "is a folder" if target.is_dir() else "is not a regular file (a pipe, socket or " \
                            "device)" if target.exists() else "does not exist"
                        raise ManifestError(f"{where}: {kind} file {target} {state}; fix the path or add the file")
            known = image_labels.setdefault(image, record["label"])
            if known != record["label"]:
                raise ManifestError(f"{where}: image {record['image']} labelled {record['label']!r} here but "
                                    f"{known!r} on an earlier line; give each image one label")
            entries.append(ManifestEntry(image=image, audio=audio, label=record["label"], split=record["split"],
                                         text=record.get("text"), speaker=record.get("speaker"), line=number))
    if not entries:
        raise ManifestError(f"{path}: the manifest has no entries")
    return entries


def write_manifest(path: str | Path, entries: Iterable[ManifestEntry]) -> Path:
    """Write entries atomically, with paths relative to the manifest's folder where possible."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = path.parent.resolve()
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", encoding="utf-8") as handle:
        for entry in entries:
            record = {"image": _relative(entry.image, root), "audio": _relative(entry.audio, root),
                      "label": entry.label, "split": entry.split}
            if entry.text is not None:
                record["text"] = entry.text
            if entry.speaker is not None:
                record["speaker"] = entry.speaker
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)
    return path


def _relative(target: Path, root: Path) -> str:
    try:
        return os.path.relpath(Path(target).resolve(), root)
    except ValueError:  # another drive on Windows
        return str(Path(target).resolve())
