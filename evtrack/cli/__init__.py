"""The ``evtrack`` command line: thin wrappers over the library."""

from evtrack.cli.main import main

__all__ = ["main"]
