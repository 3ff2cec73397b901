"""The package version (a module of its own, so any block can read it)."""

__version__ = "0.1.0"
