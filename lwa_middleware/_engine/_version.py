"""The package version, in the engine so that no module imports the package root."""

__version__ = "0.1.0"
