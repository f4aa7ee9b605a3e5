"""convert: one Keras model to one ``.tflite`` at a chosen precision, with its sidecar.

    python scripts/convert.py --model=saved_models/digits_cnn.keras --precision=int8 \
        --output=out/digits_int8.tflite --representative_data=calib.npy
    python scripts/convert.py --model=m.keras --precision=int8 --output=out/m.tflite \
        --representative_data=calib.npy --max_accuracy_drop=0.01 --eval_data=eval.npz

Writes ``FILE.tflite`` and the sidecar ``FILE.json`` (plus ``labels.txt`` with
``--labels``, and ``FILE.quant_report.{json,md,png}`` with ``--quant_report``).
Bad input exits with code 2 and one line on stderr; nothing is written then.
"""

from __future__ import annotations

import math
from pathlib import Path

from absl import flags

from tflite_opt.cli import _common

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Keras model: a .keras/.h5 file or a SavedModel folder.")
flags.DEFINE_enum("precision", "float32", ["float32", "float16", "dynamic", "int8", "int16x8"],
                  "Target precision.")
flags.DEFINE_string("output", None, "Output .tflite file; the sidecar goes to the same path with .json.")
flags.DEFINE_string("representative_data", None, "Calibration inputs for int8/int16x8: an .npy "
                    "(N, *input_shape), an .npz with array 'x', or a folder of images.")
flags.DEFINE_integer("num_calibration_samples", 100, "Calibration samples to use.", lower_bound=1)
flags.DEFINE_enum("input_type", None, ["int8", "uint8", "int16", "float32"],
                  "Input tensor dtype (int8 default for int8; float32 otherwise).")
flags.DEFINE_enum("output_type", None, ["int8", "uint8", "int16", "float32"],
                  "Output tensor dtype (same defaults as --input_type).")
flags.DEFINE_float("max_accuracy_drop", None, "Accuracy-aware int8: keep the fewest layers in "
                   "float so float - int8 accuracy <= this fraction (0.01 = 1 point). Needs "
                   "--eval_data and --precision=int8.")
flags.DEFINE_string("eval_data", None, "An .npz with arrays x and y to measure the accuracy drop on.")
flags.DEFINE_bool("allow_select_tf_ops", False, "Keep ops outside the TFLite builtins as "
                  "TensorFlow (Flex) ops; the app then needs the Flex delegate.")
flags.DEFINE_bool("trust_model", False, "Load a .keras/.h5 --model even if it would run code "
                  "from the file (Lambda layers, modules outside Keras/TensorFlow); only for files "
                  "you trust. A SavedModel converts from its traced graph and needs no trust.")
flags.DEFINE_bool("overwrite", False, "Replace existing output files.")
flags.DEFINE_enum("sparsity", "auto", ["auto", "on", "off"], "Encode sparse (pruned) weights: "
                  "'auto' for float models with >= 50% zero weights (smaller, same speed); "
                  "'on' for any precision (int8 then runs without XNNPACK: smaller but slower).")
flags.DEFINE_string("labels", None, "Text file with one class label per line (copied to labels.txt "
                    "and into the sidecar).")
flags.DEFINE_float("pixel_scale", None, "Normalization the app applies: (pixel * scale - mean) / "
                   "std; also used to read an image-folder --representative_data. Default 1/255 "
                   "for image folders, not recorded otherwise.")
flags.DEFINE_list("pixel_mean", None, "Mean(s) of the normalization, one value or one per channel.")
flags.DEFINE_list("pixel_std", None, "Std(s) of the normalization, one value or one per channel.")
flags.DEFINE_enum("target", None, ["mediapipe_image_classifier"], "Make the file for this "
                  "runtime: 'mediapipe_image_classifier' = MediaPipe Tasks' ImageClassifier (uint8 "
                  "RGB input normalized inside the model by --pixel_scale/mean/std, default /255; "
                  "float32 scores; needs --labels). --representative_data stays in model space.")
flags.DEFINE_bool("metadata", True, "Embed TFLite metadata (name, description, version, author, "
                  "license, input normalization, labels) for MediaPipe Tasks and ML Model Binding; "
                  "--nometadata to leave it out.")
flags.DEFINE_string("author", "", "Author written into the TFLite metadata.")
flags.DEFINE_string("license", "", "License written into the TFLite metadata (e.g. Apache-2.0).")
flags.DEFINE_bool("quant_report", False, "Also write the per-layer quantization error report "
                  "(int8 only): FILE.quant_report.json/.md/.png.")


def _floats(name: str, values: list[str] | None) -> float | tuple[float, ...] | None:
    if values is None:
        return None
    try:
        out = tuple(float(v) for v in values)
    except ValueError:
        _common.fail(f"--{name} must be numbers separated by commas, got {','.join(values)!r}")
    if not all(math.isfinite(v) for v in out):  # float() accepts "nan" and "inf"
        _common.fail(f"--{name} must be finite numbers, got {','.join(values)!r}")
    if name == "pixel_std" and min(out) <= 0:
        _common.fail(f"--pixel_std must be > 0 (it divides the pixels), got {','.join(values)!r}")
    return out[0] if len(out) == 1 else out


def main(argv) -> None:
    _common.reject_extra_args(argv)
    if not FLAGS.model:
        _common.fail("--model is required: a .keras/.h5 file or a SavedModel folder")
    if not FLAGS.output:
        _common.fail("--output is required: the .tflite file to write")
    output = Path(FLAGS.output)
    if output.suffix.lower() != ".tflite":
        _common.fail(f"--output={FLAGS.output!r} must end in .tflite")
    accuracy_aware = FLAGS.max_accuracy_drop is not None
    if accuracy_aware and FLAGS.precision != "int8":
        _common.fail(f"--max_accuracy_drop needs --precision=int8, got --precision={FLAGS.precision}")
    if accuracy_aware and not FLAGS.eval_data:
        _common.fail("--max_accuracy_drop needs --eval_data=FILE.npz with arrays x and y")
    if FLAGS.eval_data and not accuracy_aware:
        _common.fail("--eval_data is only used with --max_accuracy_drop")
    if FLAGS.quant_report and FLAGS.precision != "int8":
        _common.fail("--quant_report needs --precision=int8")
    if FLAGS.target and accuracy_aware:
        _common.fail("--target cannot be combined with --max_accuracy_drop")
    if FLAGS.target and not FLAGS.labels:
        _common.fail(f"--target={FLAGS.target} needs --labels=FILE (one class name per line): "
                     "MediaPipe names each category from the labels embedded in the file")
    if FLAGS.target and not FLAGS.metadata:
        _common.fail(f"--target={FLAGS.target} needs the metadata MediaPipe reads; drop --nometadata")
    # Fail before the (slow) conversion, not after it: every file this run writes must be
    # writable, and none may exist without --overwrite.
    from tflite_opt.files import check_output_file

    outputs = [output, output.with_suffix(".json")]
    if FLAGS.quant_report:
        outputs += [output.with_name(f"{output.stem}.quant_report{ext}")
                    for ext in (".json", ".md", ".png")]
    for path in outputs:
        check_output_file(path, "--output", inputs=[FLAGS.model])
    if not FLAGS.overwrite:
        existing = [p for p in outputs if p.exists()]
        if existing:
            _common.fail(f"output file(s) {', '.join(str(p) for p in existing)} already exist; pass "
                         "--overwrite to replace them or choose another --output")
    if FLAGS.labels:
        from tflite_opt.convert.sidecar import _read_labels

        _read_labels(FLAGS.labels)  # a bad labels file fails before the conversion
    mean, std = _floats("pixel_mean", FLAGS.pixel_mean), _floats("pixel_std", FLAGS.pixel_std)

    from tflite_opt.convert._quiet import quiet_converter

    with quiet_converter():
        # TensorFlow's C++ start-up lines (oneDNN, CUDA probing) are noise for this tool.
        from tflite_opt._keras import tf

        tf.constant(0)
    from tflite_opt.convert import convert, convert_accuracy_aware, quantization_report
    from tflite_opt.data.calibration import ImagePreprocessing

    normalization = None
    if FLAGS.pixel_scale is not None or mean is not None or std is not None:
        normalization = ImagePreprocessing(
            scale=FLAGS.pixel_scale if FLAGS.pixel_scale is not None else 1.0 / 255.0,
            mean=mean if mean is not None else 0.0, std=std if std is not None else 1.0)

    model = FLAGS.model
    if FLAGS.trust_model:
        from tflite_opt.models.loading import load_model, model_format

        if model_format(model) != "saved_model":  # a SavedModel converts from its graph
            model = load_model(model, trust_model=True, keep_zeros=False)
    aa = None
    if accuracy_aware:
        aa = convert_accuracy_aware(
            model, FLAGS.representative_data, FLAGS.eval_data, FLAGS.max_accuracy_drop,
            num_calibration_samples=FLAGS.num_calibration_samples, input_type=FLAGS.input_type,
            output_type=FLAGS.output_type)
        result = aa.conversion
    else:
        result = convert(model, FLAGS.precision, FLAGS.representative_data,
                         FLAGS.num_calibration_samples, FLAGS.input_type, FLAGS.output_type,
                         FLAGS.allow_select_tf_ops, preprocessing=normalization,
                         sparsity={"auto": "auto", "on": True, "off": False}[FLAGS.sparsity],
                         target=FLAGS.target)
    report = None
    if FLAGS.quant_report:
        report = aa.report if aa is not None else quantization_report(
            model, FLAGS.representative_data,
            num_calibration_samples=FLAGS.num_calibration_samples)
    from tflite_opt.convert import ModelInfo

    info = ModelInfo(author=FLAGS.author, license=FLAGS.license)
    path = result.save(output, overwrite=FLAGS.overwrite, labels=FLAGS.labels,
                       normalization=normalization, metadata=FLAGS.metadata, model_info=info)
    print(f"wrote {path} ({result.size_bytes} bytes, {result.precision.value}, input "
          f"{result.input_type}, output {result.output_type}) and {path.with_suffix('.json')}")
    if result.requires_flex_delegate:
        print(f"note: the model uses TensorFlow ops {', '.join(result.select_tf_ops)}; the app must "
              "link the Flex delegate (org.tensorflow:tensorflow-lite-select-tf-ops)")
    if aa is not None:
        status = "met" if aa.met_bound else "NOT met"
        print(f"accuracy-aware int8: bound {status}: float {100 * aa.float_accuracy:.2f}%, plain "
              f"int8 {100 * aa.ptq_accuracy:.2f}%, final {100 * aa.accuracy:.2f}% with "
              f"{len(aa.float_layers)}/{aa.num_layers} layers in float {list(aa.float_layers)}")
        latency = ("" if aa.latency_cost_us is None else
                   f", latency {aa.ptq_latency_us:.1f} -> {aa.latency_us:.1f} us")
        print(f"cost of the float layers vs plain int8: size {aa.ptq_size_bytes} -> "
              f"{aa.size_bytes} bytes{latency}")
    if report is not None:
        stem = output.with_name(output.stem + ".quant_report")
        for p in report.save(stem):
            print(f"wrote {p}")


def cli() -> None:
    _common.run(main)
