"""Data: the bundled digits dataset and validated calibration/evaluation data."""

from tflite_opt.data.calibration import (ImagePreprocessing, InputSpec, load_calibration_data,
                                         load_evaluation_data, load_image_folder)
from tflite_opt.data.digits import Dataset, load_digits

__all__ = ["Dataset", "ImagePreprocessing", "InputSpec", "load_calibration_data",
           "load_evaluation_data", "load_digits", "load_image_folder"]
