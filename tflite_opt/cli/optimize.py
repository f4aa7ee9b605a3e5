"""optimize: the main job. Keras model in; optimized .tflite files, report and plots out.

With no flags it trains the bundled digits CNN and runs the default recipe
(prune 75% -> 16 clusters -> PCQAT -> full int8):

    python scripts/optimize.py
    python scripts/optimize.py --model=saved_models/digits_cnn.keras --output_dir=outputs/mine
    python scripts/optimize.py --model=my.keras --data=my.npz --recipe=recipes/prune_qat.yaml
"""

from __future__ import annotations

from absl import flags

from tflite_opt.cli import _common
from tflite_opt.runtime.interpreter import MAX_NUM_THREADS

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Keras model to optimize: a .keras/.h5 file or a SavedModel "
                    "folder. Default: train the bundled digits CNN from scratch.")
flags.DEFINE_string("recipe", None, "Recipe file (JSON or YAML) with the training stages and the "
                    "target precision. Default: prune 75% -> 16 clusters -> PCQAT -> int8.")
flags.DEFINE_string("data", None, "An .npz with x_train, y_train, x_test, y_test. Default: "
                    "scikit-learn's digits, upscaled to the model's input size.")
flags.DEFINE_string("output_dir", "outputs", "Folder for the .tflite files, sidecars, report and plots.")
flags.DEFINE_integer("float_epochs", 20, "Epochs of float training when --model is not given.")
flags.DEFINE_integer("batch_size", 32, "Batch size of every training stage.")
flags.DEFINE_integer("seed", 0, "Seed of the data split, initialization and shuffling.",
                     lower_bound=0, upper_bound=2**32 - 1)
flags.DEFINE_integer("num_calibration_samples", 200, "Training samples used for int8 calibration.")
flags.DEFINE_integer("benchmark_runs", 100, "Timed inferences per .tflite variant.")
flags.DEFINE_integer("num_threads", 1, "Interpreter threads for accuracy and latency.",
                     lower_bound=1, upper_bound=MAX_NUM_THREADS)
flags.DEFINE_bool("trust_model", False, "Load --model even if it would run code from the file "
                  "(Lambda layers, modules outside Keras/TensorFlow); only for files you trust.")
flags.DEFINE_integer("verbose", 2, "Keras progress: 0 silent, 1 progress bars, 2 a line per epoch.")
flags.DEFINE_enum("target", None, ["mediapipe_image_classifier"], "Make the .tflite files for "
                  "this runtime: 'mediapipe_image_classifier' = MediaPipe Tasks' ImageClassifier "
                  "(needs an RGB --model, e.g. saved_models/digits_rgb.keras; uint8 RGB input, "
                  "the data's [0, 1] images taken as pixels / 255; float32 scores).")
flags.DEFINE_bool("metadata", True, "Embed TFLite metadata (name, normalization, labels) in the "
                  ".tflite files; --nometadata to leave it out (not with --target).")


def main(argv) -> None:
    _common.reject_extra_args(argv)
    if FLAGS.target and not FLAGS.metadata:
        _common.fail(f"--target={FLAGS.target} needs the metadata MediaPipe reads; drop --nometadata")
    from tflite_opt.files import check_output_dir

    check_output_dir(FLAGS.output_dir, "--output_dir")  # now, not after the training
    from tflite_opt.pipeline import PipelineConfig, run_pipeline

    config = PipelineConfig(
        output_dir=FLAGS.output_dir, model=FLAGS.model, recipe=FLAGS.recipe, data=FLAGS.data,
        float_epochs=FLAGS.float_epochs, batch_size=FLAGS.batch_size, seed=FLAGS.seed,
        num_calibration_samples=FLAGS.num_calibration_samples,
        benchmark_runs=FLAGS.benchmark_runs, num_threads=FLAGS.num_threads, verbose=FLAGS.verbose,
        trust_model=FLAGS.trust_model, target=FLAGS.target, metadata=FLAGS.metadata)
    result = run_pipeline(config)
    headline = result.report["headline"]
    print()
    print(f"float Keras accuracy      {100 * headline['float_keras_accuracy']:.2f}%")
    print(f"optimized .tflite accuracy {100 * headline['optimized_tflite_accuracy']:.2f}% "
          f"(drop {headline['accuracy_drop_points']:+.2f} points)")
    print(f"gzip size vs float32      {headline['gzip_ratio_vs_float']:.3f}x")
    guidance = result.report["latency_guidance"]
    print(guidance["summary"])
    for line in guidance["advice"]:
        print(f"  {line}")
    print(f"outputs written to {result.output_dir.resolve()}:")
    for path in sorted(result.output_dir.iterdir()):
        if not path.name.startswith("."):
            print(f"  {path.name}")


def cli() -> None:
    _common.run(main)


if __name__ == "__main__":
    cli()
