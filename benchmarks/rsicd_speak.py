"""Speak RSICD's captions of the AID scenes (9,400 images, 30 classes) into the spoken RSICD/AID benchmark.

    .venv/bin/python benchmarks/rsicd_speak.py [--captions ../shared/benchmark/rsicd_aid/captions.json]
        [--out benchmarks/work/rsicd_spoken] [--jobs 2] [--seed 0]

The same voices and the same seen/unseen discipline as spoken UCM (``ucm_speak.py``): train, val and
the seen-voice test split are read by the 18 SEEN voices; ``manifest_unseen.jsonl`` re-speaks the
test captions with the 7 UNSEEN voices, which share neither accent, variant nor flite voice with
the seen ones.

RSICD gives five sentences per image, but 4,576 of its images repeat one sentence five times and
many others repeat some: each distinct sentence of an image (compared without case or punctuation)
is spoken once, so 19,031 captions instead of 47,000, and an image with one sentence is not weighted
five-fold. Broken sentences (".") are kept in the caption file and skipped with a reason ("no words
in the text"). Rerunning reuses every finished file; a summary goes to
``benchmarks/results/rsicd_speak.json``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ucm_speak import ROOT, speak_main  # noqa: E402

# The workplace keeps the benchmark beside the repository; a clone elsewhere passes --captions or sets this variable.
DEFAULT_CAPTIONS = Path(os.environ.get("DVAN_RSICD_CAPTIONS")
                        or ROOT.parent / "shared" / "benchmark" / "rsicd_aid" / "captions.json")
DEFAULT_OUT = ROOT / "benchmarks" / "work" / "rsicd_spoken"


def main(argv: list[str] | None = None) -> int:
    """Speak spoken RSICD/AID in both voice conditions."""
    return speak_main(argv, corpus="RSICD/AID", default_captions=DEFAULT_CAPTIONS, captions_variable="DVAN_RSICD_CAPTIONS",
                      default_out=DEFAULT_OUT, results_name="rsicd_speak.json", distinct=True)


if __name__ == "__main__":
    sys.exit(main())
