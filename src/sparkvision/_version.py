"""The package version, in a module of its own so that every layer can read it without importing
the package facade (which imports the fronts lazily)."""

__version__ = "0.1.0"
