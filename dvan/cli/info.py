"""``dvan info``: versions, device, backbone weights, query models, default model, and what is missing."""

from __future__ import annotations

import argparse
import importlib
import json
import platform
from typing import Any

from dvan import __version__
from dvan.errors import DvanError

PACKAGES = ("torch", "torchvision", "numpy", "librosa", "soundfile", "sounddevice", "rasterio", "safetensors",
            "PySide6")


def _package_version(name: str) -> tuple[str | None, str | None]:
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # an import can fail with OSError for a missing shared library
        return None, f"{type(exc).__name__}: {exc}"
    return str(getattr(module, "__version__", "installed")), None


def collect_info(device: str = "auto") -> dict[str, Any]:
    """Everything ``dvan info`` reports, as a JSON-ready dict."""
    import torch

    from dvan.device import resolve_device
    from dvan.model.weights import locate_weights
    from dvan.packages import QUERY_MODELS, package_version
    from dvan.resources import default_model_path

    problems: list[str] = []
    versions: dict[str, str | None] = {"dvan": __version__, "python": platform.python_version()}
    fixes = {
        "sounddevice": "install the PortAudio library: apt-get install libportaudio2",
        "PySide6": "pip install PySide6-Essentials==6.12.0 PySide6-Addons==6.12.0",
    }
    for name in PACKAGES:
        version, error = _package_version(name)
        versions[name] = version
        if error:
            problems.append(f"{name} does not import ({error}); fix: {fixes.get(name, f'pip install {name}')}")
    try:
        chosen = str(resolve_device(device))
    except DvanError as exc:
        chosen = "unavailable"
        problems.append(str(exc))
    cuda = {
        "available": torch.cuda.is_available(),
        "build": torch.version.cuda,
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
    }
    backbones = {}
    for name in ("efficientnet-lite0", "vgg16-fc7"):
        location = locate_weights(name)
        backbones[name] = {"found": location.path is not None,
                           "path": str(location.path) if location.path else None,
                           "searched": list(location.searched)}
        if location.path is None:
            kind = "default backbone" if name == "efficientnet-lite0" else "paper's backbone (optional)"
            problems.append(f"{kind} {name}: weights not found; fix: {location.fix}")
    query_models = {}
    for entry in QUERY_MODELS:
        path = entry.weights_path()
        missing = entry.missing()
        query_models[entry.role] = {"name": entry.name, "found": path is not None and not missing,
                                    "path": str(path) if path else None,
                                    "packages": {m: package_version(m) for m in (entry.runtime, entry.weights_module)},
                                    "fix": entry.fix}
        if path is None or missing:
            problems.append(f"{entry.role} {entry.name}: {', '.join(missing) or 'weights'} not installed; "
                            f"fix: {entry.fix}")
    model_path = default_model_path()
    default_model = {"path": str(model_path), "found": model_path.is_file()}
    if not model_path.is_file():
        problems.append(f"default model not found at {model_path}; search needs a trained model "
                        "(train one with 'dvan train' or reinstall the project)")
    return {"versions": versions, "device": chosen, "cuda": cuda, "backbones": backbones,
            "query_models": query_models, "default_model": default_model, "problems": problems}


def run(args: argparse.Namespace) -> int:
    """Print the report; exit 0 even with optional parts missing (they are listed)."""
    info = collect_info(args.device)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print("dvan", info["versions"]["dvan"])
    print("versions: " + ", ".join(f"{k} {v or 'MISSING'}" for k, v in info["versions"].items() if k != "dvan"))
    cuda = info["cuda"]
    gpus = ", ".join(cuda["devices"]) or "none"
    print(f"device: {info['device']} (CUDA available: {cuda['available']}; torch CUDA build {cuda['build']}; "
          f"GPUs: {gpus})")
    for name, entry in info["backbones"].items():
        where = entry["path"] if entry["found"] else "not found (searched " + ", ".join(entry["searched"]) + ")"
        print(f"backbone {name}: {where}")
    for role, entry in info["query_models"].items():
        print(f"{role} {entry['name']}: {entry['path'] if entry['found'] else 'not installed (' + entry['fix'] + ')'}")
    model = info["default_model"]
    print(f"default model: {model['path'] if model['found'] else 'not found at ' + model['path']}")
    if info["problems"]:
        print("missing or broken:")
        for problem in info["problems"]:
            print(f"  - {problem}")
    else:
        print("everything found")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``dvan info``."""
    parser = subparsers.add_parser("info", help="versions, device, weights found, and what is missing")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run)
