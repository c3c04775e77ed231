"""The package version, in its own core module so every layer can read it without importing the API."""

__version__ = "0.1.0"
