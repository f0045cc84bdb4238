"""fabray: forecasting OHT logistics delays in semiconductor fabs on Ray.

`from fabray import Forecaster` is the Python API (`fabray.api`); it is imported on first use,
so `import fabray` (and `fabray validate`) stays free of TensorFlow and Ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fabray._version import __version__

__all__ = ["Forecaster", "__version__"]

if TYPE_CHECKING:
    from fabray.api import Forecaster


def __getattr__(name: str) -> Any:
    if name == "Forecaster":
        from fabray.api import Forecaster

        return Forecaster
    raise AttributeError(f"module 'fabray' has no attribute {name!r}")
