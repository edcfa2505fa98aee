"""Training runs on disk (no Qt, no torch): run folders, the files a run writes, activation and history.

A GUI keeps its training runs under one root folder. The runs of one collection (manifest) and
recipe (preset) are ``<root>/<collection>-<digest>-<preset>`` for the first, then ``...-2``,
``...-3``: Start takes a fresh folder, so a finished or cancelled run is never overwritten, and
Resume continues the newest. A run folder holds the files :func:`dvan.train.loop.train` writes
(:data:`BEST_FILE`, :data:`RESUME_FILE`, :data:`LOG_FILE`).

Activating a trained model copies its checkpoint into a models folder under a new name (the run
may be trained again later) and records which checkpoint was active before, so it stays
restorable: :func:`install_checkpoint` and :func:`activation_history`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

#: The best validation epoch's model, a normal checkpoint (searching and activation use it).
BEST_FILE = "best.safetensors"
#: Model, optimiser and progress of the last finished epoch (Resume continues from it).
RESUME_FILE = "resume.safetensors"
#: One JSON object per step, epoch and validation (the live curves read it).
LOG_FILE = "train_log.jsonl"
#: How many previously active models stay restorable.
HISTORY_LENGTH = 10


def run_base(root: str | Path, manifest: str | Path, preset: str) -> Path:
    """The first run folder of a collection and recipe (it need not exist).

    Args:
        root: the folder that holds every run.
        manifest: the collection's manifest; its resolved path names the runs, so two collections
            in folders of the same name get different runs.
        preset: the training preset (recipe) name.
    """
    digest = hashlib.sha1(str(Path(manifest).resolve()).encode()).hexdigest()[:10]
    return Path(root) / f"{Path(manifest).parent.name}-{digest}-{preset}"


def _number(base: Path, folder: Path) -> int | None:
    """The run number of ``folder`` (``base-N``), or None when it is not a numbered run of ``base``."""
    suffix = folder.name[len(base.name) + 1:]
    if folder.parent != base.parent or not folder.name.startswith(base.name + "-") or not suffix.isdigit():
        return None
    return int(suffix)


def existing_runs(root: str | Path, manifest: str | Path, preset: str) -> list[Path]:
    """The existing run folders of a collection and recipe, oldest first (base, base-2, base-3, ...)."""
    base = run_base(root, manifest, preset)
    if not base.parent.is_dir():
        return []
    numbered = sorted((number, folder) for folder in base.parent.glob(f"{base.name}-*")
                      if folder.is_dir() and (number := _number(base, folder)) is not None)
    return ([base] if base.is_dir() else []) + [folder for _, folder in numbered]


def latest_run(root: str | Path, manifest: str | Path, preset: str) -> Path:
    """The newest run folder (Resume continues it; its curves are shown), or the first one when none exists yet."""
    runs = existing_runs(root, manifest, preset)
    return runs[-1] if runs else run_base(root, manifest, preset)


def new_run(root: str | Path, manifest: str | Path, preset: str) -> Path:
    """A folder for a fresh run: the newest one while it is still empty, else the next number."""
    base = run_base(root, manifest, preset)
    runs = existing_runs(root, manifest, preset)
    if not runs:
        return base
    if not any(runs[-1].iterdir()):
        return runs[-1]
    numbers = [number for folder in runs if (number := _number(base, folder)) is not None]
    return base.with_name(f"{base.name}-{max([1, *numbers]) + 1}")


def can_resume(run: str | Path) -> bool:
    """Whether a run folder holds a finished epoch to continue from."""
    return (Path(run) / RESUME_FILE).is_file()


def log_path(run: str | Path) -> Path:
    """The training log of a run folder."""
    return Path(run) / LOG_FILE


def install_checkpoint(checkpoint: str | Path, models_dir: str | Path, stamp: str | None = None) -> Path:
    """Copy a trained checkpoint into the models folder under a new, dated name, atomically.

    Args:
        checkpoint: the run's checkpoint (usually ``<run>/best.safetensors``).
        models_dir: the folder of activated models (created when missing).
        stamp: the name's date part (default: now, ``YYYYmmdd-HHMMSS``); a name already taken gets
            ``-2``, ``-3``, ... so an earlier activation is never overwritten.

    Returns:
        The new file (``model-<stamp>.safetensors``).
    """
    folder = Path(models_dir)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
    target = folder / f"model-{stamp}.safetensors"
    number = 2
    while target.exists():
        target = folder / f"model-{stamp}-{number}.safetensors"
        number += 1
    # a copy cut short (disk full, a kill) must never be taken for a model: copy, then rename
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=folder)
    os.close(handle)
    try:
        shutil.copy2(checkpoint, temporary)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def activation_history(current: str, previous: list[str], activated: str, keep: int = HISTORY_LENGTH) -> list[str]:
    """The restorable models after ``activated`` replaces ``current``, most recent first.

    Args:
        current: the model active until now ("" is the shipped default model).
        previous: the restorable models before, most recent first.
        activated: the model becoming active (it is never listed as restorable).
        keep: the most models kept.
    """
    history = [current] + [path for path in previous if path not in (current, activated)]
    return history[:keep]
