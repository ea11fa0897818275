"""The `ros2-owl` command (`ros2_owl.cli:main`, also `python -m ros2_owl.cli`)."""

from .app import main

__all__ = ["main"]
