"""search: the most accurate model under a latency and size budget, found by KerasTuner.

    python scripts/search.py --budget_latency_ms=0.3 --budget_size_kb=40 --trials=12 \
        --output_dir=outputs/search
    python scripts/search.py --budget_latency_ms=2 --budget_size_kb=200 --oracle=hyperband \
        --latency_table=pixel7_profile.txt --latency_table_model=profiled.tflite

Each trial builds a candidate (MobileNetV2-/MobileNetV3-small-/ShuffleNetV2-like: width,
depth, kernel size, input resolution; int8 or float32, pruning level, clusters), rejects it
before training when its weights alone (or the phone's latency table) break a budget, else
trains it on the digits (randomly rotated, zoomed, shifted and noised each epoch, as
train_from_scratch does; --noaugmentation turns that off), compresses, converts, scores its
.tflite on augmented copies of held-out training images and measures it against a reference
(again, when within the measured noise of the latency budget). Writes pareto.csv,
pareto.md, pareto.png, trials.json, search.json and best/ (model.tflite, model.json,
labels.txt, recipe.json, report.json, report.md, search_trial_model.tflite) into --output_dir.
The pick is then trained again on all the training images and shipped as best/model.tflite
when it still meets the budget (--retrain_final=false skips that). Rerunning the same
command resumes (KerasTuner's project in OUTPUT_DIR/.tuner).

Distributed (KerasTuner's chief/worker mode over gRPC): start the same command in every
process with KERASTUNER_TUNER_ID=chief (one) or a worker name (tuner0, tuner1, ...),
KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT set; all share --output_dir; the chief writes
the outputs when the trials are done.
"""

from __future__ import annotations

from absl import flags

from tflite_opt.cli import _common

FLAGS = flags.FLAGS
flags.DEFINE_float("budget_latency_ms", None, "Latency budget in milliseconds (median of the "
                   "fastest configuration on this host, or the --latency_table estimate).",
                   lower_bound=0.0)
flags.DEFINE_float("budget_size_kb", None, "Size budget of the .tflite file in KB (1 KB = 1024 "
                   "bytes).", lower_bound=0.0)
flags.DEFINE_integer("trials", 12, "Trials to run (Hyperband stops there too).", lower_bound=1)
flags.DEFINE_string("output_dir", "outputs/search", "Folder for the Pareto table/plot, the "
                    "trial records and the best model (and KerasTuner's project, .tuner/).")
flags.DEFINE_enum("oracle", "bayesian", ["random", "bayesian", "hyperband"],
                  "KerasTuner oracle that picks the candidates.")
flags.DEFINE_integer("epochs", 8, "Float training epochs per candidate (Hyperband: the most "
                     "it gives one).", lower_bound=1)
flags.DEFINE_float("learning_rate", 2e-3, "Start of the cosine-decayed Adam learning rate.",
                   lower_bound=0.0)
flags.DEFINE_integer("batch_size", 32, "Training batch size.", lower_bound=1)
flags.DEFINE_bool("augmentation", True, "Train on randomly rotated, zoomed, shifted and noised "
                  "images (the eval set's ranges); --noaugmentation trains on them as they are.")
flags.DEFINE_float("validation_fraction", 0.2, "Share of the training images held out to score "
                   "the candidates.", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_integer("validation_copies", 9, "Augmented versions of each held-out image (the "
                     "first unchanged), as the eval set is made.", lower_bound=1)
flags.DEFINE_integer("compress_epochs", 1, "Epochs of each pruning / clustering stage.",
                     lower_bound=1)
flags.DEFINE_string("latency_table", None, "benchmark_model --enable_op_profiling=true output "
                    "from the phone (the logged text, or the CSV of "
                    "--op_profiling_output_mode=csv): latency becomes its estimate.")
flags.DEFINE_string("latency_table_model", None, "The .tflite the --latency_table was measured "
                    "on; gives the ops' shapes (exact matches and per-work scaling).")
flags.DEFINE_list("architectures", ["mobilenet_v2_like", "mobilenet_v3_small_like",
                                    "shufflenet_v2_like"], "Builders to search.")
flags.DEFINE_list("widths", ["0.25", "0.5", "0.75", "1.0"], "Width multipliers.")
flags.DEFINE_list("depths", ["0.5", "1.0"], "Depth multipliers.")
flags.DEFINE_list("kernel_sizes", ["3", "5"], "Depthwise kernel sizes (3, 5, 7).")
flags.DEFINE_list("resolutions", ["16", "24", "32"], "Input resolutions (>= 8).")
flags.DEFINE_list("precisions", ["int8", "float32"], "Precisions of the .tflite.")
flags.DEFINE_list("sparsities", ["0", "0.5", "0.75"], "Pruning targets (0 = no pruning).")
flags.DEFINE_list("clusters", ["0", "16"], "Clusters per kernel (0 = no clustering).")
flags.DEFINE_list("measure_threads", ["1"], "Thread counts find_fastest_config tries.")
flags.DEFINE_integer("benchmark_runs", 50, "Interleaved rounds per latency measurement.",
                     lower_bound=1)
flags.DEFINE_integer("latency_repeats", 5, "Extra measurements (against the reference) of a "
                     "candidate whose first one is within the measured noise of the latency "
                     "budget; the budget is checked on the median. 0 measures once, without the "
                     "reference.", lower_bound=0)
flags.DEFINE_integer("seed", 0, "Seed of the oracle, the data split and the training.",
                     lower_bound=0, upper_bound=2**31 - 1)
flags.DEFINE_integer("verbose", 1, "0 quiet, 1 a summary per trial.")
flags.DEFINE_bool("retrain_final", True, "Train the pick again on all the training images "
                  "(the held-out ones too; the trial's epochs, recipe and seed), convert, "
                  "measure it against the budget again and ship it as best/model.tflite (the "
                  "trial's file stays as best/search_trial_model.tflite); --retrain_final=false "
                  "ships the trial's file.")


def _numbers(flag: str, kind: type) -> tuple:
    try:
        return tuple(kind(v) for v in FLAGS[flag].value)
    except ValueError:
        _common.fail(f"--{flag}={','.join(FLAGS[flag].value)} is not a list of "
                     f"{'integers' if kind is int else 'numbers'}")
    return ()


def main(argv) -> None:
    _common.reject_extra_args(argv)
    from tflite_opt.files import check_output_dir
    from tflite_opt.search import Budgets, SearchConfig, SearchSpace, run_search
    from tflite_opt.search.final import final_verdict

    check_output_dir(FLAGS.output_dir, "--output_dir")
    budgets = Budgets(
        latency_us=FLAGS.budget_latency_ms * 1000 if FLAGS.budget_latency_ms else None,
        size_bytes=int(FLAGS.budget_size_kb * 1024) if FLAGS.budget_size_kb else None)
    space = SearchSpace(architectures=tuple(FLAGS.architectures),
                        widths=_numbers("widths", float), depths=_numbers("depths", float),
                        kernel_sizes=_numbers("kernel_sizes", int),
                        resolutions=_numbers("resolutions", int),
                        precisions=tuple(FLAGS.precisions),
                        sparsities=_numbers("sparsities", float),
                        clusters=_numbers("clusters", int))
    config = SearchConfig(output_dir=FLAGS.output_dir, budgets=budgets, space=space,
                          trials=FLAGS.trials, oracle=FLAGS.oracle, epochs=FLAGS.epochs,
                          compress_epochs=FLAGS.compress_epochs, batch_size=FLAGS.batch_size,
                          learning_rate=FLAGS.learning_rate, augmentation=FLAGS.augmentation,
                          validation_fraction=FLAGS.validation_fraction,
                          validation_copies=FLAGS.validation_copies,
                          latency_repeats=FLAGS.latency_repeats,
                          latency_table=FLAGS.latency_table,
                          latency_table_model=FLAGS.latency_table_model,
                          measure_threads=_numbers("measure_threads", int),
                          benchmark_runs=FLAGS.benchmark_runs, seed=FLAGS.seed,
                          verbose=FLAGS.verbose, retrain_final=FLAGS.retrain_final)
    result = run_search(config)
    if result is None:
        print("worker done: the chief writes the outputs")
        return
    trained = [r for r in result.records if r["trained"]]
    print(f"\n{len(result.records)} trials in {result.wall_s:.0f} s: {len(trained)} trained, "
          f"{len(result.records) - len(trained)} rejected before training, "
          f"{sum(1 for r in trained if not r['within_budget'])} over budget after conversion; "
          f"{len(result.front)} on the Pareto front")
    if result.best is None:
        print("no candidate met the budget; see pareto.md and trials.json")
    else:
        best = result.best
        print(f"best under budget: trial {best['trial_id']} {best['candidate']['architecture']}, "
              f"accuracy {100 * best['accuracy']:.2f}%, latency {best['latency_us']:.0f} us, "
              f"size {best['size_bytes']} B (trial on the search's training split)")
        final = result.final
        if final is not None:
            print(f"retrained on all {final['training_images']} training images: latency "
                  f"{final['latency_us']:.0f} us, size {final['size_bytes']} B, "
                  f"{'within budget' if final['within_budget'] else 'over budget, not shipped'}")
            if not final["within_budget"]:
                print(final_verdict(final, config.budgets))
        shipped = "the retrained file" if final is not None and final["within_budget"] else \
            "the trial's file"
        print(f"shipped: {result.best_dir / 'model.tflite'}, {shipped} (report.md beside it)")
    print(f"outputs in {result.output_dir.resolve()}")


def cli() -> None:
    _common.run(main)


if __name__ == "__main__":
    cli()
