"""Errors a person can act on. The CLI maps `BadInputError` to exit code 2, HTTP to a 4xx."""

from __future__ import annotations


class BadInputError(ValueError):
    """The input (file, flag, request body) breaks the contract; the message names the problem."""
