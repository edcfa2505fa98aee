"""Precision-recall curves of evaluation reports as a PNG (matplotlib, Agg; no pyplot state)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

_DIRECTIONS = (("audio_to_image", "audio → image"), ("image_to_audio", "image → audio"))


def plot_pr_curves(report: dict[str, Any], path: str | Path, title: str | None = None) -> Path:
    """Draw the audio->image and image->audio precision-recall curves of a report (paper Fig. 2).

    Args:
        report: output of :func:`dvan.eval.evaluate.evaluate` (with ``pr_curve`` entries).
        path: the PNG to write.
        title: figure title (defaults to the split and checkpoint name).
    """
    title = title or f"{report.get('split', '')} split, {Path(str(report.get('checkpoint', ''))).name}"
    return _draw({"": report}, Path(path), title)


def plot_pr_comparison(reports: Mapping[str, dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Draw several reports' precision-recall curves on shared axes, one panel per direction (paper Fig. 2).

    Args:
        reports: legend label -> output of :func:`dvan.eval.evaluate.evaluate`, drawn in this order.
        path: the PNG to write.
        title: figure title.

    Raises:
        ValueError: no reports.
    """
    if not reports:
        raise ValueError("no reports to plot")
    return _draw(reports, Path(path), title)


def _draw(reports: Mapping[str, dict[str, Any]], path: Path, title: str) -> Path:
    """One panel per direction; a single unlabelled report puts its MAP in the panel title instead of a legend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    single = len(reports) == 1 and "" in reports
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(10, 4.2) if single else (11, 4.6), dpi=110)
    FigureCanvasAgg(figure)
    for position, (key, name) in enumerate(_DIRECTIONS):
        axes = figure.add_subplot(1, 2, position + 1)
        for label, report in reports.items():
            section = report[key]
            curve = section["pr_curve"]
            axes.plot(curve["recall"], curve["precision"], linewidth=1.8 if single else 1.6,
                      label=f"{label} (MAP {100 * section['map']:.1f})")
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1.02)
        axes.set_xlabel("recall")
        axes.set_ylabel("precision")
        axes.grid(alpha=0.3)
        if single:
            axes.set_title(f"{name}  (MAP {100 * reports[''][key]['map']:.2f})")
        else:
            axes.set_title(name)
            axes.legend(fontsize=7, loc="lower left")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path)
    return path


def plot_reliability(curves: Mapping[str, dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Reliability diagram: fraction of matching pairs against mean predicted p, one line per curve.

    Args:
        curves: legend label -> a ``calibration`` record of an evaluation report
            (:meth:`dvan.eval.calibration.Reliability.to_dict`), drawn in this order.
        path: the PNG to write.
        title: figure title.

    Raises:
        ValueError: no curves.
    """
    if not curves:
        raise ValueError("no reliability curves to plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(10, 4.4), dpi=110)
    FigureCanvasAgg(figure)
    diagram, histogram = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    diagram.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfectly calibrated")
    for label, curve in curves.items():
        points = [(c, a) for c, a in zip(curve["confidence"], curve["accuracy"], strict=True)
                  if c is not None and a is not None]
        diagram.plot([c for c, _ in points], [a for _, a in points], marker="o", markersize=3, linewidth=1.5,
                     label=f"{label} (ECE {100 * curve['ece']:.1f})")
        edges = curve["edges"]
        centres = [(lo + hi) / 2 for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
        histogram.plot(centres, [max(c, 1) for c in curve["counts"]], marker="o", markersize=3, linewidth=1.2,
                       label=label)
    diagram.set_xlim(0, 1)
    diagram.set_ylim(0, 1.02)
    diagram.set_xlabel("predicted match probability p (bin mean)")
    diagram.set_ylabel("fraction of pairs that match")
    diagram.grid(alpha=0.3)
    diagram.legend(fontsize=7, loc="upper left")
    histogram.set_yscale("log")
    histogram.set_xlim(0, 1)
    histogram.set_xlabel("predicted match probability p")
    histogram.set_ylabel("pairs per bin")
    histogram.grid(alpha=0.3)
    histogram.legend(fontsize=7)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path)
    return path
