"""Entry point of the frozen (PyInstaller) dvan: one executable for the command line and the desktop viewer.

``dvan ...`` runs the command line; ``dvan app ...`` (or the executable renamed/linked as ``dvan-app``) starts the
desktop viewer.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> int:
    """Dispatch to the viewer or the command line."""
    argv = sys.argv[1:]
    if Path(sys.argv[0]).name.startswith("dvan-app") or argv[:1] == ["app"]:
        from app.main import main as app_main

        return int(app_main(argv[1:] if argv[:1] == ["app"] else argv) or 0)
    from dvan.cli.main import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
