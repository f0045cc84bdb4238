"""Data: the simulator, the validator, reading files, targets and index-based windows (no ray)."""
