"""fabray's version, in a module of its own: the run manifest records it, and a library module
that read it from the package root would import the root's lazy `Forecaster` (fabray.api, which
imports the training code) and close an import cycle."""

__version__ = "0.1.0"
