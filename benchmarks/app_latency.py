"""Viewer latency on the demo library: key release -> results, and event-loop delay during an import.

    .venv/bin/python benchmarks/app_latency.py [--model CKPT] [--repeats 5] [--work DIR]

1. **Release -> results.** The main window runs offscreen on the demo library with the model.
   A private PulseAudio server provides a virtual microphone (``tests/data/virtual_mic.py``);
   for each demo query, Space is pressed, the query is played into the virtual speaker with
   ``paplay``, and Space is released; the time from the key release to the results being shown
   (:attr:`app.search_panel.SearchPanel.last_latency_ms`) is recorded. Without PulseAudio, the
   same is measured with the query samples handed to the panel at release.
2. **Import.** The demo sources are imported into a new library through the Library tab while a
   10 ms GUI timer measures how late it fires (the event loop's stall), during the import and in
   the second after it (the views reload the library). Measured after the app has started its
   job server in the background, as it does after start-up.

Writes ``benchmarks/results/app_latency.json`` and ``.md``.

    .venv/bin/python benchmarks/app_latency.py --queries-only [--repeats 3]

measures spoken queries only, in each query mode (``--modes``, default audio and hybrid): key release
-> first (audio-branch) results, -> transcript shown, -> refined (hybrid) results shown; median and
p90 -> ``benchmarks/results/query_latency.json`` and ``.md``. The transcript and the refined ranking
are timed by the panel from the start of the search; the time from the release to that start (the
recording closed, the speech check) is added, measured around the key release.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "data"))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("DVAN_APP_NO_DIALOGS", "1")


def wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Run the Qt event loop until ``condition()`` holds or the time is up."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    deadline = time.monotonic() + timeout_s
    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(lambda: loop.quit() if condition() or time.monotonic() > deadline else None)
    timer.start()
    if not condition():
        loop.exec()
    timer.stop()
    return condition()


def summary(values: list[float]) -> dict[str, float]:
    """Median, mean, p90 and p95 (nearest rank) and max."""
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]

    return {"median": statistics.median(ordered), "mean": statistics.fmean(ordered), "p90": rank(0.9), "p95": rank(0.95),
            "max": ordered[-1], "n": len(ordered)}


def main(argv: list[str] | None = None) -> int:
    """Run both measurements and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="trained checkpoint (default: the shipped default model)")
    parser.add_argument("--repeats", type=int, default=3, help="times each demo query is spoken")
    parser.add_argument("--work", type=Path, help="work folder (default: temporary)")
    parser.add_argument("--out", type=Path, help="results path without suffix (default: benchmarks/results/"
                        "app_latency, or query_latency with --queries-only)")
    parser.add_argument("--queries-only", action="store_true",
                        help="spoken queries in each mode of --modes only (release -> results, transcript, refined)")
    parser.add_argument("--modes", nargs="+", default=["audio", "hybrid"], choices=["audio", "text", "hybrid"])
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = ROOT / "benchmarks" / "results" / ("query_latency" if args.queries_only else "app_latency")

    import app  # noqa: F401 - PySide6 fix first
    from benchmarks.machine import describe_machine
    from dvan.library.demo import demo_queries, demo_sources, ensure_demo_library
    from dvan.resources import default_model_path

    model = (args.model or default_model_path()).resolve()
    if not model.is_file():
        sys.exit(f"benchmarks/app_latency.py: no trained model at {model}; pass --model CKPT")
    work = args.work or Path(tempfile.mkdtemp(prefix="dvan-app-latency-"))
    os.environ["DVAN_APP_DATA"] = str(work / "appdata")

    from PySide6.QtWidgets import QApplication
    from virtual_mic import VirtualMicUnavailable, pulse_environment, start_virtual_microphone

    from app.backend import Backend, reserve_gui_core
    from app.main_window import MainWindow
    from app.settings import AppSettings

    reserve_gui_core()
    QApplication([sys.argv[0]])
    library = work / "demo-library"
    ensure_demo_library(library, model)
    mic = None
    audio_path = "PulseAudio virtual microphone (paplay -> null sink -> remap source -> ALSA 'pulse' -> sd.InputStream)"
    try:
        mic = start_virtual_microphone(work / "pulse")
        os.environ.update(pulse_environment(mic.runtime))
    except VirtualMicUnavailable as exc:
        audio_path = f"no PulseAudio ({exc}): query samples handed to the panel at release"
    settings = AppSettings.from_file(work / "settings.ini")
    settings.input_device = "pulse" if mic else ""
    backend = Backend(device="cpu", model_path=model)
    backend.open_library(library)
    window = MainWindow(backend, settings)
    window.resize(1400, 900)
    window.show()
    if window.warm_worker is not None:
        wait_until(lambda: not window.warm_worker.running, 300)  # type: ignore[union-attr]
    from app import worker as worker_module

    # the app starts its job server in the background after start-up; measure the steady state after it
    wait_until(lambda: bool(worker_module._IDLE_SERVERS), 300)
    panel = window.search
    latencies: dict[str, list[float]] = {}
    by_mode: dict[str, dict[str, list[float]]] = {}
    try:
        for mode in (args.modes if args.queries_only else ["audio"]):
            backend.query_mode = mode
            timings = by_mode.setdefault(mode, {"results": [], "transcript": [], "refined": []})
            for wav in demo_queries():
                for _ in range(args.repeats):
                    release_ms = speak_query(panel, mic, wav)
                    before = panel.last_latency_ms
                    wait_until(lambda b=before: panel.last_latency_ms is not None  # type: ignore[misc]
                               and panel.last_latency_ms != b and not panel.busy, 120)
                    latencies.setdefault(wav.stem, []).append(float(panel.last_latency_ms or 0.0))
                    timings["results"].append(float(panel.last_latency_ms or 0.0))
                    if args.queries_only:
                        refined = mode != "audio"
                        wait_until(lambda r=refined: panel.last_heard_ms is not None  # type: ignore[misc]
                                   and (not r or panel.last_refined_ms is not None), 300)
                        timings["transcript"].append(release_ms + float(panel.last_heard_ms or 0.0))
                        if refined and panel.last_refined_ms is not None:
                            timings["refined"].append(release_ms + panel.last_refined_ms)
                    print(f"{mode} {wav.stem}: release -> {len(panel.model.hits)} results in "
                          f"{latencies[wav.stem][-1]:.0f} ms; transcript {panel.heard.text()}", flush=True)
    finally:
        if mic is not None:
            mic.stop()
    if args.queries_only:
        window.close()
        write_query_latency(args, model, len(backend.tiles()), audio_path, by_mode)
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
        return 0
    tiles = len(backend.tiles())

    # import latency
    ticks: list[tuple[float, float]] = []  # (time, lateness in ms)
    from PySide6.QtCore import QTimer

    timer = QTimer()
    timer.setInterval(10)
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        ticks.append((now, (now - last[0]) * 1000 - 10))
        last[0] = now

    timer.timeout.connect(tick)
    window.tabs.setCurrentWidget(window.library)
    second = work / "imported"
    shutil.rmtree(second, ignore_errors=True)
    window.library.create_library(second)
    last[0] = time.perf_counter()
    timer.start()
    started = time.perf_counter()
    worker = window.library.add_paths(demo_sources())
    ended = [0.0]
    assert worker is not None
    worker.signals.finished.connect(lambda _: ended.__setitem__(0, time.perf_counter()))
    wait_until(lambda: not window.library.busy, 900)
    seconds = time.perf_counter() - started
    wait_until(lambda: False, 1.0)  # the views refresh after the import
    timer.stop()
    report = window.library.report
    during = [late for when, late in ticks if when <= ended[0]]
    after = [late for when, late in ticks if when > ended[0]]
    window.close()

    all_latencies = [v for values in latencies.values() for v in values]
    result = {
        "machine": describe_machine(),
        "model": model.name,  # results name no machine paths
        "library": {"tiles": tiles},
        "audio_path": audio_path,
        "release_to_results_ms": {"all": summary(all_latencies), "by_query": {k: summary(v) for k, v in latencies.items()}},
        "import": {"tiles": report.tiles if report else None, "seconds": seconds,
                   "tiles_per_second": (report.tiles / seconds) if report and seconds else None,
                   "event_loop_delay_ms": summary(during), "after_import_refresh_delay_ms": summary(after),
                   "timer_ticks": len(ticks)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    machine = result["machine"]
    rel = result["release_to_results_ms"]["all"]
    imp = result["import"]
    lines = [
        "# Viewer latency on the demo library",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, load {machine['load_average']}, torch "
        f"{machine['torch']} on {machine['torch_threads']} thread(s) (the app leaves one core to the GUI), GPU "
        f"{machine['gpu'] or 'none'}. Model `{Path(result['model']).name}`; demo library of {tiles} tiles. "
        f"Command: `.venv/bin/python benchmarks/app_latency.py --repeats {args.repeats}`.",
        "",
        "| what | median | mean | p95 | max | n |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| Space released -> ranked results shown (ms) | {rel['median']:.0f} | {rel['mean']:.0f} | {rel['p95']:.0f} | "
        f"{rel['max']:.0f} | {rel['n']} |",
        f"| event-loop delay of a 10 ms timer during the import (ms) | {imp['event_loop_delay_ms']['median']:.1f} | "
        f"{imp['event_loop_delay_ms']['mean']:.1f} | {imp['event_loop_delay_ms']['p95']:.1f} | "
        f"{imp['event_loop_delay_ms']['max']:.1f} | {imp['event_loop_delay_ms']['n']} |",
        f"| the same in the 1 s after it, while the views reload the library (ms) | "
        f"{imp['after_import_refresh_delay_ms']['median']:.1f} | {imp['after_import_refresh_delay_ms']['mean']:.1f} | "
        f"{imp['after_import_refresh_delay_ms']['p95']:.1f} | {imp['after_import_refresh_delay_ms']['max']:.1f} | "
        f"{imp['after_import_refresh_delay_ms']['n']} |",
        "",
        f"Audio path: {audio_path}. Release -> results covers closing the stream, the speech check, the MFCC "
        "front end, the audio branch and scoring every tile on a worker thread, and filling the grid.",
        "",
        f"Import: {imp['tiles']} tiles in {imp['seconds']:.1f} s ({imp['tiles_per_second'] or 0:.1f} tiles/s) through "
        "the Library tab, in the app's job-server process (started in the background after start-up, as the app "
        "does; the first job in a fresh process would add its start: Python, torch and the model, several "
        "seconds).",
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def speak_query(panel: Any, mic: Any, wav: Path) -> float:
    """Hold Space, play ``wav`` into the virtual microphone, release; ms from the release to the search's start."""
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    if mic is None:
        import soundfile as sf

        samples, rate = sf.read(wav, dtype="float32")
        started = time.perf_counter()
        panel._since_release.start()
        panel.handle_recording(samples, rate)
        return (time.perf_counter() - started) * 1000
    QTest.keyPress(panel.grid, Qt.Key.Key_Space)
    if not panel.recorder.recording:
        sys.exit(f"recording did not start: {panel.message.text()}")
    wait_until(lambda: False, 0.2)
    player = mic.play(wav)
    wait_until(lambda p=player: p.poll() is not None, 60)  # type: ignore[misc]
    wait_until(lambda: False, 0.3)
    started = time.perf_counter()
    QTest.keyRelease(panel.grid, Qt.Key.Key_Space)  # stops the recording, checks it and starts the search
    return (time.perf_counter() - started) * 1000


def write_query_latency(args: argparse.Namespace, model: Path, tiles: int, audio_path: str,
                        by_mode: dict[str, dict[str, list[float]]]) -> None:
    """query_latency.json and .md: release -> results / transcript / refined results per mode."""
    from benchmarks.machine import describe_machine

    machine = describe_machine()
    table = {mode: {k: summary(v) for k, v in timings.items() if v} for mode, timings in by_mode.items()}
    result = {"machine": machine, "model": model.name, "library_tiles": tiles, "audio_path": audio_path,
              "repeats": args.repeats, "units": "ms", "modes": table,
              "raw": by_mode}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    labels = {"results": "Space released -> first (audio-branch) results shown",
              "transcript": "Space released -> transcript shown",
              "refined": "Space released -> refined (words + voice) results shown"}
    lines = ["# Spoken-query latency in the viewer (demo library)", "",
             f"Machine: {machine['cpu']}, {machine['cores']} cores, no GPU, load average "
             f"{', '.join(f'{x:.1f}' for x in machine['load_average'] or [])} (shared with other jobs: timings are "
             f"upper bounds of an idle machine's); torch on {machine['torch_threads']} thread(s). Model "
             f"`{model.name}`; demo library of {tiles} tiles; {len(list(by_mode.values())[0]['results'])} spoken "
             f"queries per mode (5 demo queries x {args.repeats}). Audio path: {audio_path}. Command: "
             f"`.venv/bin/python benchmarks/app_latency.py --queries-only --repeats {args.repeats}`.", "",
             "| mode | what | median (ms) | p90 (ms) | max (ms) | n |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    for mode, rows in table.items():
        for key, row in rows.items():
            lines.append(f"| {mode} | {labels[key]} | {row['median']:.0f} | {row['p90']:.0f} | {row['max']:.0f} | "
                         f"{row['n']} |")
    lines += ["", "The first results never wait for the recogniser: the transcript (Whisper tiny.en) and, in hybrid "
              "mode, the refined ranking follow on a worker thread."]
    for suffix, text in ((".json", json.dumps(result, indent=1) + "\n"), (".md", "\n".join(lines) + "\n")):
        target = args.out.with_suffix(suffix)
        partial = target.with_name(target.name + ".partial")
        partial.write_text(text, encoding="utf-8")
        partial.replace(target)
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
