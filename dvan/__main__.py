import sys

from dvan.cli.main import main

sys.exit(main())
