"""fabray: forecasting OHT logistics delays in semiconductor fabs on Ray."""

__version__ = "0.1.0"
