"""A sharded library: several libraries (shards, e.g. one per source region) mounted together.

A mount is a small JSON file listing its shards by path relative to the file, so the mount and
its shards move together (or sit on a shared file system every worker sees)::

    {"dvan_mount": 1, "shards": ["north", "south"]}

Each shard is a normal library, written by its own imports (shards can be imported at the same
time on different machines). Opening a mount opens every shard and checks they fit together:
all must exist and hold features of the same backbone, so one model scores them all.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from dvan.errors import LibraryError, MountError
from dvan.library.store import DB_NAME, Library

#: The mount file's format version (its "dvan_mount" key).
MOUNT_FORMAT = 1


def is_mount(path: str | Path) -> bool:
    """Whether ``path`` is a mount file (a file, not a library folder)."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError:
        return False
    return head.lstrip().startswith(b"{") and b"dvan_mount" in head


def write_mount(path: str | Path, shards: Sequence[str | Path]) -> list[Path]:
    """Write a mount of existing shard libraries, atomically; returns the shard folders.

    Raises:
        MountError: no shard given, one given twice, or a shard that does not fit the others.
        LibraryError: a shard is not a library.
    """
    path = Path(path)
    folders = [Path(s).expanduser().resolve() for s in shards]
    if not folders:
        raise MountError(f"{path}: give at least one shard library to mount")
    if len(set(folders)) != len(folders):
        raise MountError(f"{path}: a shard is listed twice; list each library once")
    base = path.expanduser().resolve().parent
    relative = [os.path.relpath(f, base) for f in folders]
    opened = _open_shards(path, [Path(r) for r in relative], base)
    for library in opened:
        library.close()
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps({"dvan_mount": MOUNT_FORMAT, "shards": relative}, indent=2) + "\n")
    os.replace(partial, path)
    return folders


def read_mount(path: str | Path) -> list[Path]:
    """The shard folders a mount file lists, resolved against the file's folder.

    Raises:
        MountError: the file is not a readable mount.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MountError(f"{path}: not a readable mount file ({exc}); make one with 'dvan library mount {path} "
                         "SHARD...'") from exc
    if not isinstance(data, dict) or data.get("dvan_mount") != MOUNT_FORMAT:
        raise MountError(f"{path}: not a dvan mount of format {MOUNT_FORMAT}; make one with 'dvan library mount {path}"
                         " SHARD...'")
    shards = data.get("shards")
    if not isinstance(shards, list) or not shards or not all(isinstance(s, str) and s for s in shards):
        raise MountError(f"{path}: \"shards\" must be a non-empty list of library folders; make the file again with "
                         f"'dvan library mount {path} SHARD...'")
    base = path.expanduser().resolve().parent
    return [(base / s).resolve() for s in shards]


def open_mount(path: str | Path) -> list[Library]:
    """Open every shard of a mount, checked to fit together (close them when done).

    Raises:
        MountError: the file is not a mount, a shard is missing, or shards hold different backbones.
        LibraryError: a shard cannot be opened (damaged, another format).
    """
    path = Path(path)
    folders = read_mount(path)
    base = path.expanduser().resolve().parent
    return _open_shards(path, folders, base)


def _open_shards(mount: Path, shards: Sequence[Path], base: Path) -> list[Library]:
    opened: list[Library] = []
    try:
        for listed in shards:
            folder = (base / listed).resolve()
            shard = os.path.relpath(folder, base)  # as the mount file lists it
            if not (folder / DB_NAME).is_file():
                raise MountError(f"{mount}: shard {shard} is missing (no library at {folder}); restore it, or mount "
                                 "the remaining shards again with 'dvan library mount'")
            try:
                library = Library.open(folder)
            except LibraryError as exc:
                raise type(exc)(f"{mount}: shard {shard}: {exc}") from exc
            opened.append(library)
            first = opened[0]
            if library.backbone_name != first.backbone_name or library.backbone_dim != first.backbone_dim:
                raise MountError(f"{mount}: shard {shard} holds {library.backbone_name} features but shard "
                                 f"{os.path.relpath(first.path, base)} holds {first.backbone_name}; one model scores "
                                 f"every shard, so re-index it: dvan library reindex {folder} --backbone "
                                 f"{first.backbone_name}")
    except BaseException:
        for library in opened:
            library.close()
        raise
    return opened
