"""``python -m app``: start the desktop viewer."""

import sys

from app.main import main

sys.exit(main())
