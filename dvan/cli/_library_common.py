"""Helpers shared by the library, search, captions and demo commands (not a command itself)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dvan.progress import CancelToken, Progress, TqdmProgress
from dvan.resources import default_model_path

if TYPE_CHECKING:  # torch is imported by the commands that load a model, not by the parsers
    from dvan.cluster.sharded_search import ShardedSearch
    from dvan.model.factory import ModelBundle
    from dvan.search.engine import SearchEngine

#: Unit shown by the progress bar of each stage.
STAGE_UNITS = {"scan": "file", "import": "tile", "reproject": "tile", "captions": "caption"}


class StageBars:
    """A progress callback with one tqdm bar per stage, each in its own unit (tiles/s, captions/s)."""

    def __init__(self, disable: bool = False) -> None:
        self._disable = disable
        self._bars: dict[str, TqdmProgress] = {}

    def __call__(self, report: Progress) -> None:
        bar = self._bars.get(report.stage)
        if bar is None:
            bar = TqdmProgress(unit=STAGE_UNITS.get(report.stage, "it"), disable=self._disable)
            self._bars[report.stage] = bar
        bar(report)

    def close(self) -> None:
        """Close every bar."""
        for bar in self._bars.values():
            bar.close()


def add_model_options(parser: argparse.ArgumentParser, results: bool) -> None:
    """--model, --device (and --allow-untrained for commands that show results)."""
    parser.add_argument("--model", metavar="CKPT", type=Path, default=None,
                        help=f"model checkpoint (default: the embedded model {default_model_path()})")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    if results:
        parser.add_argument("--allow-untrained", action="store_true",
                            help="show results of a model not marked trained (meaningless rankings; for testing)")


def optional_model(checkpoint: Path | None, device: str) -> ModelBundle | None:
    """The model to store projections for while indexing: --model, else the default model, else None."""
    from dvan.model.factory import create_model

    if checkpoint is not None:
        return create_model(checkpoint=checkpoint, device=device)
    if default_model_path().is_file():
        return create_model(checkpoint=default_model_path(), device=device)
    return None


def prepare_projections(engine: SearchEngine | ShardedSearch, quiet: bool) -> None:
    """Compute the library's projections for the engine's model from its stored features, if it lacks them.

    Says so on stderr, with a progress bar per stage unless ``quiet``.
    """
    if not engine.needs_projection:
        return
    print("computing projections for this model from the stored features (once)", file=sys.stderr)
    bars = StageBars(disable=quiet)
    try:
        engine.prepare(bars, CancelToken())
    finally:
        bars.close()


def format_bounds(bounds: tuple[float, float, float, float] | None) -> str:
    """W,S,E,N with 5 decimals (about 1 m), or a dash."""
    return "-" if bounds is None else ",".join(f"{v:.5f}" for v in bounds)
