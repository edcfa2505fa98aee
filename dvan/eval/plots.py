"""Precision-recall curves of an evaluation report as a PNG (matplotlib, Agg; no pyplot state)."""

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
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(10, 4.2), dpi=110)
    FigureCanvasAgg(figure)
    for position, (key, name) in enumerate(_DIRECTIONS):
        axes = figure.add_subplot(1, 2, position + 1)
        section = report[key]
        curve = section["pr_curve"]
        axes.plot(curve["recall"], curve["precision"], linewidth=1.8)
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1.02)
        axes.set_xlabel("recall")
        axes.set_ylabel("precision")
        axes.set_title(f"{name}  (MAP {100 * section['map']:.2f})")
        axes.grid(alpha=0.3)
    figure.suptitle(title or f"{report.get('split', '')} split, {Path(str(report.get('checkpoint', ''))).name}")
    figure.tight_layout()
    figure.savefig(path)
    return path


def plot_pr_comparison(reports: Mapping[str, dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Draw several reports' precision-recall curves on shared axes, one panel per direction (paper Fig. 2).

    Args:
        reports: legend label -> output of :func:`dvan.eval.evaluate.evaluate`, drawn in this order.
        path: the PNG to write.
        title: figure title.

    Raises:
        ValueError: no reports.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not reports:
        raise ValueError("no reports to plot")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(11, 4.6), dpi=110)
    FigureCanvasAgg(figure)
    for position, (key, name) in enumerate(_DIRECTIONS):
        axes = figure.add_subplot(1, 2, position + 1)
        for label, report in reports.items():
            section = report[key]
            curve = section["pr_curve"]
            axes.plot(curve["recall"], curve["precision"], linewidth=1.6,
                      label=f"{label} (MAP {100 * section['map']:.1f})")
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1.02)
        axes.set_xlabel("recall")
        axes.set_ylabel("precision")
        axes.set_title(name)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7, loc="lower left")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path)
    return path
