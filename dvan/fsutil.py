"""File-system helpers shared by the writers: disk-full detection, leftovers of killed writes, file digests."""

from __future__ import annotations

import errno
import hashlib
from pathlib import Path

#: errno values that mean "no room left", whatever the file system calls it.
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (an OSError, or safetensors' error wrapping one) reports a full disk or quota."""
    if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
        return True
    # safetensors wraps the OS error in its own exception, keeping only the text
    text = str(exc)
    return "No space left on device" in text or "Disk quota exceeded" in text or "os error 28" in text


def is_leftover(name: str) -> bool:
    """Whether a file name is what a killed atomic write leaves behind.

    ``NAME.partial`` is dvan's own temporary name; ``.tmpXXXXXX`` is the temporary file that
    safetensors writes next to its destination before renaming it.
    """
    return name.endswith(".partial") or (name.startswith(".tmp") and len(name) == 10 and name[4:].isalnum())


def remove_leftovers(folder: Path) -> list[Path]:
    """Delete the leftovers of killed writes directly in ``folder``; the caller must own the folder.

    Returns:
        The files removed.
    """
    removed = []
    for entry in folder.iterdir():
        if entry.is_file() and not entry.is_symlink() and is_leftover(entry.name):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def file_digest(path: str | Path) -> str:
    """SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
