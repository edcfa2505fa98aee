"""The default voice pool of ``dvan speak``, apart from the speaking code so ``dvan speak --help`` stays light."""

from __future__ import annotations

#: A varied default pool: five espeak-ng accents with male, female and named variants, and three flite voices.
DEFAULT_VOICES: tuple[str, ...] = (
    "espeak:en-us+m1", "espeak:en-us+m3", "espeak:en-us+f1", "espeak:en-us+f3", "espeak:en-us+Andy",
    "espeak:en-us+klatt", "espeak:en-gb+m2", "espeak:en-gb+m4", "espeak:en-gb+f2", "espeak:en-gb+Annie",
    "espeak:en-us-nyc+m2", "espeak:en-us-nyc+f1", "espeak:en-gb-x-gbclan+m3", "espeak:en-gb-x-gbcwmd+f3",
    "espeak:en-gb-x-gbcwmd+m4", "flite:slt", "flite:awb", "flite:kal16",
)
