"""Data: the bundled digits dataset and validated calibration/evaluation data."""

from tflite_opt.data.calibration import (ImagePreprocessing, InputSpec, load_calibration_data,
                                         load_evaluation_data, load_image_folder)
from tflite_opt.data.digits import Dataset, load_digits
from tflite_opt.data.digits_eval import AugmentedEvalSet, augment_held_out, load_digits_eval

__all__ = ["AugmentedEvalSet", "Dataset", "ImagePreprocessing", "InputSpec", "augment_held_out",
           "load_calibration_data", "load_evaluation_data", "load_digits", "load_digits_eval",
           "load_image_folder"]
