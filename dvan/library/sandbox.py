"""The raster sandbox: imports read local files only, never the network or files outside their folders.

A raster handed over by someone else may be a VRT (an XML file naming other datasets) or a
service description that GDAL would fetch over HTTP. Before GDAL opens anything:

* the path itself must be a plain local file (no ``/vsi...`` prefix, no ``scheme://``);
* a file whose first bytes are a VRT (whatever its name) is parsed, and every dataset it names
  (``SourceFilename``, raw bands, overviews, masks, nested VRTs) must be a local file inside the
  allowed folders; any network path anywhere in it refuses the file;
* GDAL opens it with every driver except those that only talk to servers (WMS, WCS, ...);
* after opening, every file GDAL says the dataset uses must lie inside the allowed folders.

:func:`harden_gdal` sets GDAL's and PROJ's configuration so that no request can be made even if
something slipped through: curl-backed file systems see no file at all
(``CPL_VSIL_CURL_ALLOWED_EXTENSIONS``), no retries, no Python pixel functions, raw VRT bands only
next to their VRT, PROJ without its grid CDN. It is process-wide (environment variables, which
GDAL reads on every lookup, in every thread) and is applied by :func:`dvan.library.raster.open_raster`.
``GDAL_DISABLE_READDIR_ON_OPEN`` is left alone: local ``.ovr``/``.msk`` sidecars are wanted, and
the only way a sidecar probe could reach the network (a curl path) is closed above.
"""

from __future__ import annotations

import functools
import os
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from dvan.errors import UnsafeRasterError

#: GDAL and PROJ settings that make network access impossible (see the module docstring).
GDAL_SANDBOX = {
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".dvan-no-network",
    "GDAL_HTTP_MAX_RETRY": "0",
    "GDAL_HTTP_TIMEOUT": "1",
    "GDAL_HTTP_CONNECTTIMEOUT": "1",
    "CPL_VSIL_CURL_USE_HEAD": "NO",
    "GDAL_VRT_ENABLE_PYTHON": "NO",
    "GDAL_VRT_RAWRASTERBAND_ALLOWED_SOURCE": "SIBLING_OR_CHILD_OF_VRT_PATH",
    "PROJ_NETWORK": "OFF",
}
#: Drivers that read from servers: removed from GDAL's registry, and refused if one opened a file.
NETWORK_DRIVERS = frozenset({
    "WMS", "WMTS", "WCS", "HTTP", "DAAS", "EEDA", "EEDAI", "PLMOSAIC", "PLSCENES", "OGCAPI", "STACIT", "STACTA",
    "NGW", "PostGISRaster", "GeoRaster", "JPIPKAK",
})
#: Drivers refused for an import: the network ones, and MEM (reads memory addresses named in a string;
#: it stays registered because rasterio writes some formats through it).
REFUSED_DRIVERS = NETWORK_DRIVERS | {"MEM"}
#: Markers of a network path, anywhere in a raster description.
NETWORK_MARKERS = ("/vsicurl", "/vsis3", "/vsigs", "/vsiaz", "/vsiadls", "/vsioss", "/vsiswift", "/vsiwebhdfs",
                   "/vsihdfs", "http://", "https://", "ftp://", "ftps://", "s3://", "gs://")
#: Largest VRT read for checking (a real one describing thousands of files is a few MB).
MAX_VRT_BYTES = 64 << 20
#: Nesting depth of VRTs naming VRTs.
MAX_VRT_DEPTH = 8
#: XML elements of a VRT that name another dataset.
_DATASET_ELEMENTS = frozenset({"SourceFilename", "SourceDataset", "SourceFile", "Filename"})
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")


def harden_gdal() -> None:
    """Apply :data:`GDAL_SANDBOX` and drop the network drivers from GDAL, process-wide (idempotent)."""
    for key, value in GDAL_SANDBOX.items():
        if os.environ.get(key) != value:
            os.environ[key] = value
    skip = " ".join(sorted(NETWORK_DRIVERS))
    if os.environ.get("GDAL_SKIP") != skip:  # honoured if GDAL registers its drivers after this
        os.environ["GDAL_SKIP"] = skip
    _deregister_network_drivers()


@functools.cache
def _gdal_library() -> Any:
    """The GDAL shared library this process has loaded (rasterio's), through ctypes; None if not found."""
    import ctypes
    import ctypes.util

    import rasterio._base  # noqa: F401  (loads GDAL)

    candidates: list[str] = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            candidates = [line.split()[-1] for line in maps if "libgdal" in line and line.split()[-1].startswith("/")]
    except OSError:  # not Linux: the platform's usual name
        pass
    if not candidates:  # find_library runs ldconfig or a compiler: only when the maps say nothing
        found = ctypes.util.find_library("gdal")
        candidates = [found] if found else []
    for path in dict.fromkeys(candidates):
        try:
            library = ctypes.CDLL(path)
            library.GDALGetDriverByName.restype = ctypes.c_void_p
            library.GDALGetDriverByName.argtypes = [ctypes.c_char_p]
            library.GDALDeregisterDriver.argtypes = [ctypes.c_void_p]
            return library
        except (OSError, AttributeError):
            continue
    return None


def _deregister_network_drivers() -> None:
    """Remove the drivers of :data:`NETWORK_DRIVERS` from GDAL's registry, so GDAL cannot pick one.

    rasterio opens with every registered driver and cannot pass a list of allowed ones; where the
    library cannot be reached, :func:`check_opened` still refuses a dataset such a driver opened.
    """
    from rasterio.env import Env

    library = _gdal_library()
    if library is None:
        return
    with Env():  # drivers are registered when the first environment starts
        for name in NETWORK_DRIVERS:
            handle = library.GDALGetDriverByName(name.encode())
            if handle:
                library.GDALDeregisterDriver(handle)


def roots_for(paths: Iterable[str | Path]) -> list[Path]:
    """The folders imports may read: given folders themselves, and the folder of each given file."""
    roots: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError):
            continue
        roots.append(resolved if resolved.is_dir() else resolved.parent)
    return list(dict.fromkeys(roots))


def is_inside(path: Path, roots: Sequence[Path]) -> bool:
    """Whether ``path`` (resolved) lies in one of ``roots``."""
    return any(path == root or root in path.parents for root in roots)


def _network_marker(text: str) -> str | None:
    lowered = text.lower()
    return next((m for m in NETWORK_MARKERS if m in lowered), None)


def check_path(path: Path, roots: Sequence[Path]) -> Path:
    """Refuse a path that is not a local file inside ``roots``; returns it resolved.

    Raises:
        UnsafeRasterError: a network or virtual file system path, or a file outside the folders.
    """
    text = str(path)
    marker = _network_marker(text)
    if marker or text.startswith("/vsi") or "://" in text:
        raise UnsafeRasterError(f"{path}: refers to the network ({marker or 'a GDAL virtual file system'}); "
                                "imports read local files only: copy the data into the folder and add that")
    try:
        resolved = path.resolve(strict=True)
    except RuntimeError as exc:
        raise UnsafeRasterError(f"{path}: symbolic link loop; remove or fix the link") from exc
    except OSError as exc:
        raise UnsafeRasterError(f"{path}: cannot be read ({exc.strerror or exc}); remove or fix it") from exc
    if not is_inside(resolved, roots):
        raise UnsafeRasterError(f"{path}: leads to {resolved}, outside the folders given to the import; copy the "
                                "file into the folder (or add it by name) if it should be imported")
    return resolved


def check_raster_file(path: Path, roots: Sequence[Path]) -> None:
    """Refuse a file that is, or names, anything but local files inside ``roots``.

    Raises:
        UnsafeRasterError: see :func:`check_path` and the module docstring.
    """
    resolved = check_path(path, roots)
    if resolved.is_file():
        _check_vrt(path, resolved, roots, 0)


def _check_vrt(shown: Path, resolved: Path, roots: Sequence[Path], depth: int) -> None:
    with open(resolved, "rb") as handle:
        head = handle.read(4096)
    if b"<vrtdataset" not in head.lower():
        return
    if depth >= MAX_VRT_DEPTH:
        raise UnsafeRasterError(f"{shown}: VRTs nested more than {MAX_VRT_DEPTH} deep; flatten them")
    if resolved.stat().st_size > MAX_VRT_BYTES:
        raise UnsafeRasterError(f"{shown}: a VRT of more than {MAX_VRT_BYTES >> 20} MB; split it into smaller VRTs")
    data = resolved.read_bytes()
    text = data.decode("utf-8", errors="replace")
    marker = _network_marker(text)
    if marker:
        raise UnsafeRasterError(f"{shown}: a VRT that refers to the network ({marker}); imports read local files "
                                "only: copy its sources into the folder and point the VRT at them")
    try:
        tree = ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise UnsafeRasterError(f"{shown}: a VRT that is not valid XML ({exc}); fix or remove it") from exc
    for element in tree.iter():
        if element.tag not in _DATASET_ELEMENTS or not (element.text or "").strip():
            continue
        name = element.text.strip()  # type: ignore[union-attr]
        if "<" in name:  # an inline nested VRT: its markers were checked with the whole text
            continue
        if name.startswith("/vsi") or "://" in name or (_SCHEME.match(name) and not re.match(r"^[A-Za-z]:[\\/]",
                                                                                             name)):
            raise UnsafeRasterError(f"{shown}: a VRT naming {name!r}, not a plain local file; imports read local "
                                    "files only")
        relative = next((v for k, v in element.attrib.items() if k.lower() == "relativetovrt"), "0") == "1"
        # GDAL reads a path not marked relativeToVRT as given: relative to the working folder
        source = resolved.parent / name if relative else Path(name)
        try:
            target = source.resolve()
        except RuntimeError as exc:
            raise UnsafeRasterError(f"{shown}: a VRT naming {name!r}, a symbolic link loop") from exc
        if not is_inside(target, roots):
            raise UnsafeRasterError(f"{shown}: a VRT reading {target}, outside the folders given to the import; "
                                    "imports read only files inside the folders they are given")
        if target.is_file():
            _check_vrt(shown, target, roots, depth + 1)


def check_opened(path: Path, driver: str, files: Iterable[str], roots: Sequence[Path]) -> None:
    """Refuse an opened dataset read by a network driver or using files outside ``roots`` (GDAL's list).

    Raises:
        UnsafeRasterError: naming the driver or the first such file.
    """
    if driver in REFUSED_DRIVERS:
        raise UnsafeRasterError(f"{path}: a {driver} dataset, which GDAL reads from a server or memory; imports "
                                "read local files only")
    for name in files:
        if _network_marker(name) or name.startswith("/vsi"):
            raise UnsafeRasterError(f"{path}: reads {name}, not a local file; imports read local files only")
        try:
            target = Path(name).resolve()
        except RuntimeError as exc:
            raise UnsafeRasterError(f"{path}: uses {name}, a symbolic link loop") from exc
        if not is_inside(target, roots):
            raise UnsafeRasterError(f"{path}: reads {target}, outside the folders given to the import; imports read "
                                    "only files inside the folders they are given")
