"""Take the screenshots of docs/screenshots/ (one per tab) on the demo library, under Xvfb.

    .venv/bin/python docs/screenshots.py [--model CKPT] [--out docs/screenshots] [--work DIR]

Without a display it re-runs itself under ``xvfb-run`` (Debian package ``xvfb``), so the real X11
(xcb) platform draws the window, fonts and styles as on a desktop.

What it does, all offline and seeded:

1. builds the demo library (``resources/demo``, :func:`dvan.library.demo.ensure_demo_library`) in
   the work folder;
2. gives it spoken captions for the Captions tab: each demo image (the 36 mosaic cells and the 6
   chips) is written as a PNG with one sentence about its class, spoken by
   :func:`dvan.data.speak.speak_captions` (espeak-ng), and added with
   :func:`dvan.library.captions.add_captions`; the same files are the Training tab's collection;
3. starts a virtual microphone (a private PulseAudio server, ``tests/data/virtual_mic.py``) when
   PulseAudio is installed, so the Settings tab lists audio devices as on a desktop;
4. opens the viewer on it with the model, speaks the demo query "airplanes" into the search,
   centres the map on the results, ranks captions for the best tile, imports the demo sources
   into a second library (Library tab), fine-tunes for a few epochs (Training tab), and saves
   one PNG per tab.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: One sentence per UC Merced class (the demo's classes), spoken as the images' captions.
CLASS_SENTENCES = {
    "agricultural": "green fields divided into long straight strips of farmland",
    "airplane": "an airplane parked on the concrete apron of an airport",
    "baseballdiamond": "a baseball diamond with a sandy infield surrounded by grass",
    "beach": "white waves rolling onto a sandy beach",
    "buildings": "large buildings with flat roofs next to a street",
    "chaparral": "dry land covered with scattered bushes",
    "denseresidential": "many small houses packed closely along the streets",
    "forest": "a dense forest of dark green trees",
    "freeway": "a wide freeway with cars on several lanes",
    "golfcourse": "a golf course with smooth green fairways and trees",
    "harbor": "many white boats docked at the piers of a harbor",
    "intersection": "two roads crossing at an intersection with cars waiting",
    "mediumresidential": "houses with gardens along curved streets",
    "mobilehomepark": "rows of mobile homes parked close together",
    "overpass": "an overpass where one road crosses over another",
    "parkinglot": "a parking lot full of cars in neat rows",
    "river": "a river winding between green banks",
    "runway": "a long straight runway with white markings",
    "sparseresidential": "a few houses spread out among trees",
    "storagetanks": "round white storage tanks next to each other",
    "tenniscourt": "a tennis court with white lines beside some trees",
}
SPLITS = ("train", "train", "val")


def ensure_display() -> None:
    """Re-run this script under xvfb-run when there is no X display."""
    if os.environ.get("DISPLAY") or os.environ.get("DVAN_SCREENSHOTS_CHILD"):
        return
    if shutil.which("xvfb-run") is None:
        sys.exit("docs/screenshots.py: no X display and no xvfb-run; install the Debian package xvfb")
    env = {**os.environ, "DVAN_SCREENSHOTS_CHILD": "1"}
    env.pop("QT_QPA_PLATFORM", None)
    command = ["xvfb-run", "-a", "-s", "-screen 0 1920x1200x24", sys.executable, *sys.argv]
    sys.exit(subprocess.run(command, env=env, stdin=subprocess.DEVNULL).returncode)


def demo_captions(work: Path) -> Path:
    """Write the demo images as files with one caption sentence each; return the caption JSON Lines file."""
    import numpy as np
    from PIL import Image

    from dvan.library.demo import demo_dir

    layout = json.loads((demo_dir() / "layout.json").read_text())
    folder = work / "captions"
    lines = []
    with Image.open(demo_dir() / "demo_scene.tif") as scene:
        mosaic = np.asarray(scene.convert("RGB"))
    for number, tile in enumerate(layout["tiles"]):
        col, row, width, height = tile["window"]
        label = tile["class"]
        image = folder / "images" / label / Path(tile["ucm_image"]).with_suffix(".png").name
        image.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mosaic[row:row + height, col:col + width]).save(image)
        lines.append({"image": str(image.relative_to(folder)), "label": label, "split": SPLITS[number % 3],
                      "text": CLASS_SENTENCES[label]})
    for number, chip in enumerate(sorted((demo_dir() / "chips").glob("*.jpg"))):
        label = chip.stem.rstrip("0123456789")
        image = folder / "images" / label / chip.name
        image.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(chip, image)
        lines.append({"image": str(image.relative_to(folder)), "label": label, "split": SPLITS[number % 3],
                      "text": CLASS_SENTENCES[label]})
    path = folder / "captions.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Run the Qt event loop until ``condition()`` holds."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    deadline = time.monotonic() + timeout_s
    timer = QTimer()
    timer.setInterval(50)
    timer.timeout.connect(lambda: loop.quit() if condition() or time.monotonic() > deadline else None)
    timer.start()
    if not condition():
        loop.exec()
    timer.stop()
    if not condition():
        raise SystemExit(f"docs/screenshots.py: timed out waiting for {what}")


def main(argv: list[str] | None = None) -> int:
    """Build the demo material, drive the viewer, save the screenshots."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="trained checkpoint (default: the shipped default model)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary folder, removed at the end)")
    parser.add_argument("--epochs", type=int, default=6, help="fine-tuning epochs shown in the Training tab")
    args = parser.parse_args(argv)
    ensure_display()

    import app  # noqa: F401 - applies the PySide6 fix before Qt is used
    from dvan.resources import default_model_path

    model = (args.model or default_model_path()).resolve()
    if not model.is_file():
        sys.exit(f"docs/screenshots.py: no trained model at {model}; pass --model CKPT")
    work = args.work or Path(tempfile.mkdtemp(prefix="dvan-screenshots-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["DVAN_APP_DATA"] = str(work / "appdata")
    os.environ.setdefault("DVAN_APP_NO_DIALOGS", "1")
    args.out.mkdir(parents=True, exist_ok=True)

    from dvan.data.speak import SpeakConfig, speak_captions
    from dvan.library.captions import add_captions
    from dvan.library.demo import demo_queries, demo_sources, ensure_demo_library
    from dvan.library.store import Library
    from dvan.search.engine import load_search_model

    bundle = load_search_model(model, device="cpu")
    library_path = work / "demo-library"
    if not (library_path / "library.sqlite").exists():
        print("building the demo library…", flush=True)
        ensure_demo_library(library_path, bundle)
        spoken = work / "spoken"
        report = speak_captions(demo_captions(work), spoken, SpeakConfig(voices=("espeak:en-us+m3", "espeak:en-gb+f2",
                                                                                  "espeak:en-us+f3"), seed=0))
        manifest = getattr(report, "manifest", None) or spoken / "manifest.jsonl"
        with Library.open(library_path) as library:
            add_captions(library, manifest, bundle)
    manifest = work / "spoken" / "manifest.jsonl"

    # a desktop has a sound server; give the headless run one too (tests/data/virtual_mic.py), so the Settings tab
    # lists audio devices as it would there
    sys.path.insert(0, str(ROOT / "tests" / "data"))
    from virtual_mic import VirtualMicUnavailable, pulse_environment, start_virtual_microphone

    mic = None
    try:
        mic = start_virtual_microphone(work / "pulse")
        os.environ.update(pulse_environment(mic.runtime))
    except VirtualMicUnavailable as exc:
        print(f"no virtual microphone ({exc}); the Settings tab will list no audio devices", flush=True)

    from PySide6.QtWidgets import QApplication

    from app.backend import Backend, reserve_gui_core
    from app.main import apply_dark_palette
    from app.main_window import MainWindow
    from app.settings import AppSettings

    reserve_gui_core()
    qt = QApplication([sys.argv[0]])
    qt.setStyle("Fusion")
    apply_dark_palette(qt)
    settings = AppSettings.from_file(work / "settings.ini")
    settings.active_model = str(model)
    settings.device = "cpu"
    backend = Backend(device="cpu", model_path=model)
    backend.open_library(library_path)
    window = MainWindow(backend, settings)
    window.resize(1440, 900)
    window.show()
    if window.warm_worker is not None:
        wait_until(lambda: not window.warm_worker.running, 120, "the model to load")  # type: ignore[union-attr]

    def shoot(name: str) -> None:
        wait_until(lambda: True, 0.3, "paint")
        qt.processEvents()
        path = args.out / f"{name}.png"
        window.grab().save(str(path))
        print("wrote", path, flush=True)

    # Search
    query = next(q for q in demo_queries() if q.stem == "airplanes")
    window.tabs.setCurrentWidget(window.search)
    window.search.search_file(query)
    wait_until(lambda: window.search.outcome is not None, 120, "the search")
    window.search.message.setText(f"Query {query.name} (\"several airplanes parked at the airport\"): "
                                  + window.search.message.text())
    shoot("search")

    # Map: the results, zoomed so the mosaic's thumbnails are drawn
    window.tabs.setCurrentWidget(window.map)
    best = window.search.outcome.hits[0].tile  # type: ignore[union-attr]
    placed = next((h.tile for h in window.search.outcome.hits if h.tile.georeferenced), best)  # type: ignore[union-attr]
    window._map_tile_selected(placed.id)
    window.map.show_all()
    shoot("map")
    window.map.view.centre_on_tile(placed.id)
    shoot("map-zoomed")

    # Captions: the best tile dropped onto the captions panel
    window.tabs.setCurrentWidget(window.captions)
    window.captions.rank_tile(best.id)
    wait_until(lambda: bool(window.captions.hits), 120, "the captions")
    window.captions.list.setCurrentRow(0)
    first = window.captions.hits[0]
    window.captions.caption_text.setText(first.text or first.audio.name)
    shoot("captions")

    # Library: import the demo sources into a second library
    window.tabs.setCurrentWidget(window.library)
    second = work / "imported-library"
    shutil.rmtree(second, ignore_errors=True)
    window.library.create_library(second)
    window.library.add_paths(demo_sources())
    wait_until(lambda: not window.library.busy, 600, "the import")
    shoot("library")
    window.library.open_library(library_path)

    # Training: fine-tune on the demo captions
    window.tabs.setCurrentWidget(window.training)
    window.training.load_collection(manifest)
    window.training.table.selectRow(1)
    window.training.epochs.setValue(args.epochs)
    window.training.batch.setValue(8)
    window.training.start_training()
    wait_until(lambda: not window.training.busy, 1800, "the training")
    wait_until(lambda: window.training.current_val is not None, 600, "the evaluation of the current model")
    shoot("training")

    # Settings
    window.tabs.setCurrentWidget(window.settings_panel)
    shoot("settings")
    window.close()
    if mic is not None:
        mic.stop()
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
