"""Cold start, as a new user meets it: whole processes, several runs each, medians.

    python benchmarks/cold_start.py [--runs 5] [--library DIR] [--query WAV] [--skip-viewer]

Measures, on the demo library (built once with ``dvan demo`` if missing) and one demo query:

* ``dvan --help``: process start to exit;
* ``dvan search LIB --wav QUERY --top 5`` one-shot, against ``python -c "import torch"`` run
  alternately with it, as a ratio of medians (target <= 1.3);
* ``dvan search --text`` once that command exists (skipped while it does not);
* the viewer: ``dvan-app --demo`` launched -> main window shown (first paint) -> ready for a
  spoken search (model loaded, library open, hold-to-speak enabled, no loading state); target
  <= 5 s. It runs with ``QT_QPA_PLATFORM=offscreen`` unless a display is set.

Every command runs in a fresh process, alternating between the measured commands so a change in
the machine's load affects all of them alike. Results go to ``benchmarks/results/cold_start.md``
and ``.json`` with the machine (CPU, cores, load average at the start).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import describe_machine  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
#: Targets of the cold-start issue.
SEARCH_RATIO_TARGET = 1.3
VIEWER_READY_TARGET_S = 5.0
HELP_TARGET_S = 0.5


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        env.setdefault("QT_QPA_PLATFORM", "offscreen")
    env.setdefault("DVAN_APP_NO_DIALOGS", "1")
    return env


def wall(argv: list[str]) -> float:
    """Seconds from starting ``argv`` to its exit (it must succeed)."""
    started = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, env=_env(), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                   timeout=600)
    return time.perf_counter() - started


def viewer_times(library: Path, settings: Path) -> dict[str, float]:
    """Launch the viewer in a fresh process: seconds to the window's first paint and to ready."""
    started = time.time()
    result = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--viewer-child", str(library),
                             "--settings", str(settings)], cwd=ROOT, env=_env(), capture_output=True, text=True,
                            timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"the viewer run failed:\n{result.stderr[-3000:]}")
    marks = json.loads(result.stdout.strip().splitlines()[-1])
    return {name: stamp - started for name, stamp in marks.items()}


def viewer_child(library: Path, settings: Path) -> int:
    """Run ``app.main.main`` and print the wall-clock times of first paint and of readiness as JSON."""
    from PySide6.QtCore import QEvent, QObject, QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication([sys.argv[0]])
    marks: dict[str, float] = {}

    class FirstPaint(QObject):
        def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
            if event.type() == QEvent.Type.Paint and "shown" not in marks:
                marks["shown"] = time.time()
            return False

    watcher = FirstPaint()

    def poll() -> None:
        from app.main_window import MainWindow

        windows = [w for w in app.topLevelWidgets() if isinstance(w, MainWindow)]
        if not windows:
            return
        window = windows[0]
        if "watching" not in marks:
            marks["watching"] = time.time()
            window.installEventFilter(watcher)
        backend = window.backend
        loading = getattr(window, "loading_text", lambda: "")()  # (absent before the loading state existed)
        if ("shown" in marks and backend._bundle is not None and backend.library is not None and not loading
                and window.search.talk.isEnabled() and window.search.model_banner.isHidden()):
            marks["ready"] = time.time()
            print(json.dumps({k: v for k, v in marks.items() if k != "watching"}), flush=True)
            # measured: leave without the teardown (the window's close waits for the background warm-up)
            os._exit(0)

    timer = QTimer()
    timer.timeout.connect(poll)
    timer.start(5)
    from app.main import main

    os.environ["DVAN_APP_NO_PRESTART"] = "1"  # no job server: it would only load the CPU after "ready"
    os.environ["DVAN_DEMO_LIBRARY"] = str(library)
    return main(["--demo", "--settings", str(settings)])


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def ensure_demo(library: Path | None) -> Path:
    """``library`` as it is when given, else the demo library (built first when incomplete)."""
    if library is not None:
        return library
    from dvan.library.demo import demo_library_path, demo_library_ready

    path = demo_library_path()
    if not demo_library_ready(path):
        subprocess.run([sys.executable, "-m", "dvan.cli.main", "demo", "--top", "1", "--quiet"], cwd=ROOT, env=_env(),
                       check=True, timeout=1800)
    return path


def text_search_exists() -> bool:
    result = subprocess.run([sys.executable, "-m", "dvan.cli.main", "search", "--help"], cwd=ROOT, env=_env(),
                            capture_output=True, text=True, timeout=60)
    return "--text" in result.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each command (default 5)")
    parser.add_argument("--library", type=Path, help="a built demo library to use as it is (default: the demo "
                                                     "library, built first when missing)")
    parser.add_argument("--query", type=Path, default=ROOT / "resources" / "demo" / "queries" / "airplanes.wav")
    parser.add_argument("--text", default="many planes parked next to a long terminal",
                        help="the text query of dvan search --text, once it exists")
    parser.add_argument("--skip-viewer", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "cold_start", help="results path without suffix")
    parser.add_argument("--before", type=Path, metavar="JSON",
                        help="results of the same benchmark on an earlier tree, shown below these ones")
    parser.add_argument("--before-label", default="an earlier tree", help="what --before measured")
    parser.add_argument("--render-only", type=Path, metavar="JSON", help="only re-render these results")
    parser.add_argument("--viewer-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--settings", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.viewer_child:
        return viewer_child(args.viewer_child, args.settings)
    if args.render_only:
        result = json.loads(args.render_only.read_text(encoding="utf-8"))
        _write(result, args)
        return 0

    machine = describe_machine()  # first: the load average before this benchmark adds any
    library = ensure_demo(args.library)
    python = sys.executable
    commands = {
        "python": [python, "-c", "pass"],  # the floor under every process here
        "help": [python, "-m", "dvan.cli.main", "--help"],
        # the ranking alone (what the ratio is about), then the same with the transcript that follows it
        "search": [python, "-m", "dvan.cli.main", "search", str(library), "--wav", str(args.query), "--top", "5",
                   "--no-transcript"],
        "search_transcript": [python, "-m", "dvan.cli.main", "search", str(library), "--wav", str(args.query),
                              "--top", "5"],
        "import_torch": [python, "-c", "import torch"],
    }
    if text_search_exists():
        commands["search_text"] = [python, "-m", "dvan.cli.main", "search", str(library), "--text", args.text,
                                   "--top", "5"]
    for argv_ in commands.values():  # page cache and the numba/pycache caches warm, as on a used install
        wall(argv_)
    times: dict[str, list[float]] = {name: [] for name in commands}
    viewer: dict[str, list[float]] = {"shown": [], "ready": []}
    settings = RESULTS.parent / "work" / "cold_start_settings.ini"
    settings.parent.mkdir(parents=True, exist_ok=True)
    for run in range(args.runs):
        for name, argv_ in commands.items():
            times[name].append(wall(argv_))
        if not args.skip_viewer:
            settings.unlink(missing_ok=True)
            marks = viewer_times(library, settings)
            viewer["shown"].append(marks["shown"])
            viewer["ready"].append(marks["ready"])
        print(f"run {run + 1}/{args.runs}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items())
              + (f", viewer shown {viewer['shown'][-1]:.2f} s ready {viewer['ready'][-1]:.2f} s"
                 if viewer["shown"] else ""), flush=True)
    medians = {name: median(values) for name, values in times.items()}
    result = {
        "machine": machine,
        "library": library.name,  # names only: results carry no machine paths
        "query": args.query.name,
        "runs": args.runs,
        "seconds": times,
        "median_s": medians,
        "search_over_import_torch": medians["search"] / medians["import_torch"],
        "viewer_s": viewer if viewer["shown"] else None,
        "viewer_median_s": {k: median(v) for k, v in viewer.items()} if viewer["shown"] else None,
        "targets": {"help_s": HELP_TARGET_S, "search_over_import_torch": SEARCH_RATIO_TARGET,
                    "viewer_ready_s": VIEWER_READY_TARGET_S},
    }
    _write(result, args)
    return 0


def _write(result: dict, args: argparse.Namespace) -> None:  # type: ignore[type-arg]
    if args.before:
        before = json.loads(args.before.read_text(encoding="utf-8"))
        result["before"] = {"label": args.before_label, **{k: v for k, v in before.items() if k != "before"}}
    for entry in (result, result.get("before") or {}):  # names only: results carry no machine paths
        for key in ("library", "query"):
            if key in entry:
                entry[key] = Path(entry[key]).name
    text = render(result)
    if result.get("before"):
        before = result["before"]
        text += "\n" + render(before).replace("# Cold start", f"## Before: {before['label']}", 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(text, encoding="utf-8")
    print(text)


def _spread(values: list[float]) -> str:
    return f"{median(values):.2f} (min {min(values):.2f}, max {max(values):.2f})"


def render(result: dict) -> str:  # type: ignore[type-arg]
    """The results as the markdown page."""
    seconds = result["seconds"]
    machine = result["machine"]
    load = ", ".join(f"{v:.2f}" for v in machine["load_average"]) if machine["load_average"] else "unknown"
    lines = [f"# Cold start ({machine['cpu']}, {machine['cores']} cores, load average {load} at the start)", "",
             f"Command: `python benchmarks/cold_start.py --runs {result['runs']}`; every row is a fresh process, "
             f"{result['runs']} runs, interleaved; seconds, median (min, max).", "",
             f"Library: the demo library (42 tiles); query `{Path(result['query']).name}`.", "",
             *(["The machine was shared (load average above its core count at the start): absolute times are "
                "several times an idle machine's; the ratios to `import torch` and before/after hold better.", ""]
               if machine["load_average"] and machine["load_average"][0] > (machine["cores"] or 1) else []),
             "| what | seconds | target |", "| --- | ---: | --- |",
             *([f"| `python -c pass` (interpreter start, for scale) | {_spread(seconds['python'])} | |"]
               if "python" in seconds else []),
             f"| `dvan --help` | {_spread(seconds['help'])} | < {result['targets']['help_s']} s |",
             f"| `dvan search LIB --wav {Path(result['query']).name} --top 5 --no-transcript` | "
             f"{_spread(seconds['search'])} | |",
             *([f"| the same with its transcript (Whisper loads after the ranking is printed) | "
                f"{_spread(seconds['search_transcript'])} | |"] if "search_transcript" in seconds else []),
             f"| `python -c \"import torch\"` | {_spread(seconds['import_torch'])} | |",
             f"| one-shot search / import torch (medians) | {result['search_over_import_torch']:.2f}x | "
             f"<= {result['targets']['search_over_import_torch']} |"]
    if "search_text" in seconds:
        lines.append(f"| `dvan search LIB --text ... --top 5` | {_spread(seconds['search_text'])} | |")
    else:
        lines.append("| `dvan search --text` | not measured: the command does not exist yet | |")
    if result["viewer_s"]:
        viewer = result["viewer_s"]
        lines += [f"| viewer launched -> window shown (first paint) | {_spread(viewer['shown'])} | < 2 s |",
                  f"| viewer launched -> ready for a spoken search | {_spread(viewer['ready'])} | "
                  f"<= {result['targets']['viewer_ready_s']} s |"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
