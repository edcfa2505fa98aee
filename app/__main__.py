"""``python -m app``: start the desktop viewer."""

import sys

from app.main import main

# guarded: the app's job processes (multiprocessing, spawn) import the main module again
if __name__ == "__main__":
    sys.exit(main())
