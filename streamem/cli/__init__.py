"""The ``streamem`` command line (the edge: nothing in the library imports it)."""

from streamem.cli.commands import main

__all__ = ["main"]
