"""The job controller: a real dvan job (speaking generated captions) reports progress on the job bar and is cancelled.

The job runs on the controller's real worker thread (:class:`app.worker.Worker`) and speaks with the
real espeak-ng voices; its signals reach the GUI thread through the worker's dispatcher.
"""

from __future__ import annotations

import json
from pathlib import Path

import app_support  # noqa: F401 - offscreen Qt, no dialogs
from make_captions import make_captions


def many_captions(out: Path, count: int) -> Path:
    """A caption file of ``count`` distinct captions over the fixture's images."""
    files = make_captions(out)
    first = [json.loads(line) for line in files["jsonl"].read_text().splitlines() if line.strip()]
    rows = [{**first[i % len(first)], "text": f"Caption number {i} shows a few houses beside a road ."}
            for i in range(count)]
    path = out / "many.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_a_job_reports_progress_and_its_result_on_the_bar(qtbot, tmp_path: Path) -> None:
    from app.job_control import JobController
    from app.widgets import JobBar
    from dvan.data.speak import speak_captions

    bar = JobBar(rate_unit="captions/s")
    qtbot.addWidget(bar)
    jobs = JobController(bar, rate_stage="speak")
    captions = make_captions(tmp_path / "captions")["jsonl"]
    reports, results = [], []
    worker = jobs.start(speak_captions, captions, tmp_path / "spoken", text="speaking…", on_progress=reports.append,
                        on_finished=results.append)
    assert jobs.running and bar.cancel_button.isEnabled() and bar.label.text() == "speaking…"
    with qtbot.waitSignal(worker.signals.done, timeout=60000):
        pass
    assert not jobs.running
    assert len(results) == 1 and results[0].manifest.is_file()
    assert reports and all(r.stage == "speak" for r in reports)
    final = reports[-1]
    assert final.total == 6 and final.done == final.total  # every caption line; the last report always gets through
    assert bar.bar.maximum() == 6 and bar.bar.value() == 6
    assert jobs.last_rate > 0  # captions per second of the speak stage


def test_cancel_on_the_bar_stops_a_running_job(qtbot, tmp_path: Path) -> None:
    from app.job_control import JobController
    from app.widgets import JobBar
    from dvan.data.speak import speak_captions

    bar = JobBar()
    qtbot.addWidget(bar)
    jobs = JobController(bar, cancel_text="stopping after the current caption…")
    out = tmp_path / "spoken"
    outcome: list[str] = []

    def first_report(_report: object) -> None:
        if not outcome:
            outcome.append("progress")
            bar.cancel_button.click()  # as the user does
            outcome.append(bar.label.text())

    worker = jobs.start(speak_captions, many_captions(tmp_path / "captions", 60), out, on_progress=first_report,
                        on_finished=lambda _: outcome.append("finished"),
                        on_cancelled=lambda: outcome.append("cancelled"))
    with qtbot.waitSignal(worker.signals.done, timeout=60000):
        pass
    assert outcome == ["progress", "stopping after the current caption…", "cancelled"]
    assert not jobs.running and worker.token.cancelled
    assert not (out / "manifest.jsonl").exists()  # a cancelled speak writes no manifest
    assert len(list(out.rglob("*.wav"))) < 60
    bar.label.setText("idle")
    jobs.cancel()  # nothing runs: nothing happens
    assert bar.label.text() == "idle"
