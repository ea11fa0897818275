"""`python -m ros2_owl.cli`: the `ros2-owl` command."""

import sys

from .app import main

if __name__ == "__main__":
    sys.exit(main())
