"""Validation shared by the models' hyper-parameter dataclasses: errors name the field and value."""

from __future__ import annotations

from fabray.errors import BadInputError


def check_sizes(model: str, allow_empty: tuple[str, ...] = ("head_units",), **sizes: tuple[int, ...]) -> None:
    """Every size a positive int; only the names in `allow_empty` may be empty tuples."""
    for name, values in sizes.items():
        values = tuple(values)
        if (not values and name not in allow_empty) or any(
            not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values
        ):
            raise BadInputError(
                f"{model}: {name} must be a list of positive integers"
                f"{'' if name in allow_empty else ' (at least one)'}. Received: {name}={values!r}"
            )


def check_dropout(model: str, dropout: float, name: str = "dropout") -> None:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise BadInputError(f"{model}: {name} must be in [0, 1). Received: {name}={dropout!r}")


def check_input_dims(model: str, lookback: int, n_features: int) -> None:
    if int(lookback) < 1 or int(n_features) < 1:
        raise BadInputError(
            f"{model}: lookback and n_features must be >= 1. "
            f"Received: lookback={lookback}, n_features={n_features}"
        )


def check_positive(model: str, **values: float) -> None:
    """Each named number is > 0 (ints must also be ints)."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise BadInputError(f"{model}: {name} must be a positive number. Received: {name}={value!r}")
