"""Data: the bundled digits dataset and validated calibration/evaluation data."""
