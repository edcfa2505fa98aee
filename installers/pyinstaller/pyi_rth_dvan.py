"""PyInstaller runtime hook of the frozen dvan: resources inside the bundle, a writable numba cache.

librosa (MFCC) and dvan's fused scoring kernel compile with numba and cache the machine code (``cache=True``).
Measured with PyInstaller 6.22 and numba 0.68: for functions inside the frozen executable numba does not use
``NUMBA_CACHE_DIR``; it caches them in its user-wide folder (``$XDG_CACHE_HOME/numba``, else ``~/.cache/numba``),
keyed on the executable, and raises "cannot cache function ...: no locator available" when that folder is not
writable. So this hook sets ``NUMBA_CACHE_DIR`` (kept when set; used for any jitted code whose source is on disk)
and, when the user-wide folder cannot be written (a service account without a home, a read-only home), points
``XDG_CACHE_HOME`` at a writable temporary folder instead.
"""

import os
import sys
import tempfile

_base = getattr(sys, "_MEIPASS", os.path.dirname(os.path.abspath(sys.executable)))
os.environ.setdefault("DVAN_RESOURCES", os.path.join(_base, "resources"))


def _writable(path):
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


_cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
if not _writable(os.path.join(_cache_home, "numba")):
    _cache_home = tempfile.mkdtemp(prefix="dvan-cache-")
    os.environ["XDG_CACHE_HOME"] = _cache_home
if not os.environ.get("NUMBA_CACHE_DIR"):
    _numba = os.path.join(_cache_home, "dvan", "numba")
    os.environ["NUMBA_CACHE_DIR"] = _numba if _writable(_numba) else tempfile.mkdtemp(prefix="dvan-numba-")
