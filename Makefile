# The README's two commands: `make run` (the main job) and `make test` (the suite).
# Both create .venv at the repository root on first use and install the pinned stack.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test benchmark example-model rgb-example clean

# Installed from the lock with --no-deps: mediapipe declares absl-py~=2.3 (tfmot 0.8.1 pins
# ~=1.2), opencv-contrib-python and sounddevice, none of which its metadata writers and
# ImageClassifier use (BUILD_NOTES.md, "TFLite metadata"). Everything else is resolved by pip.
# NO_DEPS is a |-separated list of package names.
NO_DEPS := mediapipe

$(STAMP): setup.cfg pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "tflite_opt needs Python 3.11 (TensorFlow 2.21 wheels); set PYTHON=python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	grep -v -E '^($(NO_DEPS))==' requirements.lock > $(VENV)/requirements.resolved.txt
	$(PY) -m pip install --quiet -r $(VENV)/requirements.resolved.txt
	$(PY) -m pip install --quiet --no-deps $$(grep -E '^($(NO_DEPS))==' requirements.lock)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

run: $(STAMP)
	$(PY) scripts/optimize.py --output_dir=outputs

# The suite runs on TEST_WORKERS pytest-xdist processes: CI has 2 cores and most tests are
# Python-bound on tiny models, so one process leaves a core idle. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup

benchmark: $(STAMP)
	$(PY) benchmarks/run.py --suite=all --output_dir=benchmark_results

example-model: $(STAMP)
	$(PY) scripts/make_example_model.py --output=saved_models/digits_cnn.keras --overwrite

# The RGB example: trains saved_models/digits_rgb.keras, writes the MediaPipe-ready
# outputs/rgb/digits_rgb_int8.tflite (see docs/android.md).
rgb-example: $(STAMP)
	$(PY) scripts/make_rgb_example.py --overwrite

clean:
	rm -rf outputs benchmark_results
