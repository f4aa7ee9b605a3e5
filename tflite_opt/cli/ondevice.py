"""ondevice: export a Keras model as a .tflite that trains on the phone, and train it here.

    python scripts/ondevice.py --mode=export --model=saved_models/digits_cnn.keras \
        --trainable=head --optimizer=adam --fresh_head --output=outputs/ondevice
    python scripts/ondevice.py --mode=train --output=outputs/ondevice --epochs=5
    python scripts/ondevice.py --mode=train --output=outputs/ondevice --epochs=5 \
        --learning_rate=0.002 --lr_schedule=warmup_cosine --warmup_steps=45
    # one schedule over two runs: 3 epochs now, the remaining 2 after a restart
    python scripts/ondevice.py --mode=train --output=outputs/ondevice --norestore --epochs=3 \
        --learning_rate=0.002 --lr_schedule=warmup_cosine --warmup_steps=45 --schedule_epochs=5
    python scripts/ondevice.py --mode=train --output=outputs/ondevice --epochs=2 \
        --learning_rate=0.002 --lr_schedule=warmup_cosine --warmup_steps=45 --schedule_epochs=5

``export`` writes ``OUTPUT/ondevice.tflite`` (signatures train, infer, save, restore,
set_learning_rate; TFLite builtin ops only, so no Flex delegate is needed) and
``OUTPUT/ondevice.json`` (what it holds).
``train`` trains that file through its ``train`` signature on the LiteRT interpreter alone
(``--data``, default: the digits at the model's input size), scores the ``infer`` signature on
the held-out images before and after, and writes the checkpoint ``OUTPUT/checkpoint.npz``
(weights, optimizer state, step count and learning rate) and ``OUTPUT/train_report.json``. A
second ``train`` run resumes from the checkpoint unless ``--norestore``. ``train`` sets the
learning rate through the file's ``set_learning_rate`` signature: ``--learning_rate`` (default:
the file's current rate, the checkpoint's when resumed) for every step, or
``--lr_schedule=warmup_cosine`` over this run's steps, or with ``--schedule_epochs`` over that
many epochs counted from the checkpoint's first step, which a resumed run continues.
Bad input exits with code 2 and one line on stderr; nothing is written then.
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from tflite_opt.cli import _common

FLAGS = flags.FLAGS
flags.DEFINE_enum("mode", None, ["export", "train"], "export: Keras model -> on-device training "
                  ".tflite; train: train that .tflite through its signatures.")
flags.DEFINE_string("output", None, "Folder for ondevice.tflite/.json (export) and "
                    "checkpoint.npz/train_report.json (train).")
flags.DEFINE_string("model", None, "export: the Keras model (.keras/.h5 or SavedModel folder).")
flags.DEFINE_list("trainable", ["head"], "export: 'head' (the last layer with weights), 'all', "
                  "or layer names (comma-separated); layers before the first are frozen.")
flags.DEFINE_enum("optimizer", "sgd", ["sgd", "adam"], "export: the optimizer in the train "
                  "signature.")
flags.DEFINE_float("learning_rate", None, "export: the file's initial step size; default "
                   "Keras's (SGD 0.01, Adam 0.001). train: the rate to train at, default the "
                   "file's current one (the checkpoint's when resumed); or the peak of "
                   "--lr_schedule, default the file's exported rate.")
flags.DEFINE_enum("lr_schedule", "constant", ["constant", "warmup_cosine"], "train: constant, "
                  "or a linear warm-up over --warmup_steps then a cosine decay towards 0 over "
                  "the run's remaining steps (or --schedule_epochs' steps).")
flags.DEFINE_integer("warmup_steps", 0, "train: warm-up steps of --lr_schedule=warmup_cosine.",
                     lower_bound=0)
flags.DEFINE_integer("schedule_epochs", None, "train: --lr_schedule spans this many epochs "
                     "counted from the checkpoint's first step, and a resumed run continues it "
                     "from the checkpoint's step count; default: this run's --epochs, from "
                     "this run's first step.", lower_bound=1)
flags.DEFINE_float("momentum", 0.0, "export: SGD momentum in [0, 1).")
flags.DEFINE_enum("loss", "sparse_categorical_crossentropy",
                  ["sparse_categorical_crossentropy", "categorical_crossentropy"],
                  "export: the loss (integer or one-hot labels).")
flags.DEFINE_integer("batch_size", None, "export: fix the train signature's batch size (default "
                     "any); train: samples per step (default the file's, else 32).", lower_bound=1)
flags.DEFINE_bool("fresh_head", False, "export: give the trainable Dense layers new random "
                  "weights (Glorot-uniform, seeded by --seed) before exporting.")
flags.DEFINE_bool("trust_model", False, "export: load a --model that would run code from the "
                  "file (Lambda layers); only for files you trust.")
flags.DEFINE_string("tflite", None, "train: the on-device .tflite; default OUTPUT/ondevice.tflite.")
flags.DEFINE_string("data", None, "train: an .npz with x_train, y_train, x_test, y_test. Default: "
                    "the digits at the model's input size, tested on 3,240 augmented held-out "
                    "images.")
flags.DEFINE_integer("epochs", 5, "train: passes over x_train.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of --fresh_head and of the shuffling.", lower_bound=0)
flags.DEFINE_bool("restore", True, "train: resume from OUTPUT/checkpoint.npz when it exists.")
flags.DEFINE_bool("overwrite", False, "export: replace an existing OUTPUT/ondevice.tflite.")


def _export(output: Path) -> None:
    from tflite_opt.errors import InvalidArgumentError
    from tflite_opt.files import atomic_write_json, check_output_file
    from tflite_opt.models.loading import load_model
    from tflite_opt.ondevice.export import export_trainable
    from tflite_opt.ondevice.head import reinitialize_layers, trainable_layer_names

    if not FLAGS.model:
        _common.fail("--mode=export needs --model: a .keras/.h5 file or a SavedModel folder")
    path = check_output_file(output / "ondevice.tflite", "--output", inputs=[FLAGS.model],
                             overwrite=FLAGS.overwrite)
    model = load_model(FLAGS.model, trust_model=FLAGS.trust_model)
    trainable = FLAGS.trainable[0] if FLAGS.trainable in (["head"], ["all"]) else FLAGS.trainable
    options = {"momentum": FLAGS.momentum} if FLAGS.optimizer == "sgd" else {}
    if FLAGS.momentum and FLAGS.optimizer != "sgd":
        raise InvalidArgumentError("--momentum is an SGD setting; drop it with --optimizer=adam")
    if FLAGS.fresh_head:
        reinitialize_layers(model, trainable_layer_names(model, trainable), seed=FLAGS.seed)
    result = export_trainable(model, path, trainable=trainable, optimizer=FLAGS.optimizer,
                              learning_rate=FLAGS.learning_rate, loss=FLAGS.loss,
                              batch_size=FLAGS.batch_size, overwrite=FLAGS.overwrite, **options)
    description = {**result.to_dict(), "source_model": str(FLAGS.model),
                   "fresh_head": FLAGS.fresh_head}
    atomic_write_json(output / "ondevice.json", description)
    print(f"wrote {path} ({result.size_bytes} bytes): signatures {', '.join(result.signatures)}; "
          f"trains {', '.join(result.trainable_layers)} with {result.optimizer.name} "
          f"(lr {result.optimizer.learning_rate}); flex ops {result.flex_ops}, custom ops "
          f"{result.custom_ops}")
    print(f"next: python scripts/ondevice.py --mode=train --output={output}")


def _load_data(path: str | None, trainer) -> object:
    shape = trainer.input_shape
    if path is None and len(shape) == 3 and shape[0] == shape[1] and shape[2] == 1:
        from tflite_opt.data.digits_eval import load_digits_eval

        return load_digits_eval(image_size=shape[0])
    from tflite_opt.pipeline import load_data

    return load_data(path, shape, seed=FLAGS.seed, num_outputs=trainer.num_classes)


def _train(output: Path) -> None:
    from tflite_opt.files import atomic_write_json, check_output_file
    from tflite_opt.ondevice.runner import OnDeviceTrainer

    tflite = Path(FLAGS.tflite) if FLAGS.tflite else output / "ondevice.tflite"
    if not tflite.is_file():
        _common.fail(f"--tflite {str(tflite)!r} does not exist; make it with --mode=export "
                     f"--output={output}, or pass --tflite=FILE")
    checkpoint = check_output_file(output / "checkpoint.npz", "--output", inputs=[tflite])
    report_path = check_output_file(output / "train_report.json", "--output", inputs=[tflite])
    trainer = OnDeviceTrainer(tflite)
    data = _load_data(FLAGS.data, trainer)
    y_train = _labels(trainer, data.y_train)
    # A schedule peaks at the exported rate by default, not at the rate a checkpoint ended at.
    peak = (trainer.learning_rate if FLAGS.lr_schedule != "constant"
            and FLAGS.learning_rate is None else None)
    resumed = FLAGS.restore and checkpoint.exists()
    if resumed:
        trainer.restore(checkpoint)
    start_step = trainer.global_step
    before = trainer.evaluate(data.x_test, _labels(trainer, data.y_test))
    batch_size = FLAGS.batch_size or trainer.batch_size or 32
    print(f"{tflite}: {'resumed from ' + str(checkpoint) if resumed else 'initial weights'}; "
          f"held-out accuracy {100 * before['accuracy']:.2f}% on {len(data.x_test)} images")
    rate, schedule, first = _learning_rate(trainer, len(data.x_train), batch_size, peak)
    losses = trainer.fit(data.x_train, y_train, epochs=FLAGS.epochs, batch_size=batch_size,
                         seed=FLAGS.seed, progress=True, learning_rate=schedule or rate,
                         initial_step=first)
    after = trainer.evaluate(data.x_test, _labels(trainer, data.y_test))
    trainer.save(checkpoint)
    report = {"tflite": str(tflite), "data": data.name, "train_samples": len(data.x_train),
              "test_samples": len(data.x_test), "epochs": FLAGS.epochs,
              "batch_size": batch_size, "seed": FLAGS.seed, "resumed": resumed,
              "learning_rate": rate, "lr_schedule": FLAGS.lr_schedule,
              "warmup_steps": FLAGS.warmup_steps, "schedule_epochs": FLAGS.schedule_epochs,
              "global_step_start": start_step, "global_step_end": trainer.global_step,
              "learning_rate_first_step": schedule(first) if schedule else rate,
              "learning_rate_last_step": trainer.learning_rate,
              "epoch_losses": losses, "before": before, "after": after,
              "checkpoint": str(checkpoint), "interpreter": trainer.loaded.backend}
    atomic_write_json(report_path, report)
    print(f"loss per epoch: {', '.join(f'{v:.4f}' for v in losses)}")
    print(f"held-out accuracy {100 * before['accuracy']:.2f}% -> {100 * after['accuracy']:.2f}%;"
          f" wrote {checkpoint} and {report_path}")


def _learning_rate(trainer, samples: int, batch_size: int, peak: float | None):
    """(the run's rate, a schedule or None, fit's initial_step), from --learning_rate,
    --lr_schedule and --schedule_epochs; ``peak`` is the file's exported rate."""
    from tflite_opt.errors import InvalidArgumentError
    from tflite_opt.ondevice.schedules import warmup_cosine

    if FLAGS.learning_rate is not None and not FLAGS.learning_rate > 0:
        raise InvalidArgumentError(f"--learning_rate={FLAGS.learning_rate} must be > 0")
    if FLAGS.lr_schedule == "constant":
        for flag in ("warmup_steps", "schedule_epochs"):
            if FLAGS[flag].value:
                raise InvalidArgumentError(f"--{flag} needs --lr_schedule=warmup_cosine")
        rate = FLAGS.learning_rate if FLAGS.learning_rate is not None else trainer.learning_rate
        return rate, None, None
    rate = FLAGS.learning_rate if FLAGS.learning_rate is not None else peak
    per_epoch = trainer.steps_per_epoch(samples, batch_size)
    run_steps = FLAGS.epochs * per_epoch  # the steps fit() will run
    if FLAGS.schedule_epochs is None:  # the schedule spans this run, from its first step
        total, first = run_steps, 0
    else:  # one schedule over several runs: continue from the checkpoint's step count
        total, first = FLAGS.schedule_epochs * per_epoch, trainer.global_step
        if first + run_steps > total:
            raise InvalidArgumentError(
                f"--schedule_epochs={FLAGS.schedule_epochs} spans {total} steps "
                f"({per_epoch} an epoch); the checkpoint has trained {first} and this run's "
                f"--epochs={FLAGS.epochs} adds {run_steps}, past its end: pass "
                f"--schedule_epochs={-(-(first + run_steps) // per_epoch)} or more, fewer "
                "--epochs, or --norestore to start over")
    if FLAGS.warmup_steps >= total:
        raise InvalidArgumentError(f"--warmup_steps={FLAGS.warmup_steps} must be below the "
                                   f"schedule's {total} steps ({total // per_epoch} epochs of "
                                   f"{per_epoch})")
    return rate, warmup_cosine(rate, total, FLAGS.warmup_steps), first


def _labels(trainer, y):
    """Integer labels as the file takes them: as they are, or one-hot (categorical loss)."""
    import numpy as np

    return y if trainer.sparse_labels else np.eye(trainer.num_classes, dtype=np.float32)[y]


def main(argv) -> None:
    _common.reject_extra_args(argv)
    if not FLAGS.mode:
        _common.fail("--mode is required: export or train")
    if not FLAGS.output:
        _common.fail("--output is required: the folder for the on-device files")
    from tflite_opt.files import check_output_dir

    output = check_output_dir(FLAGS.output, "--output")
    if FLAGS.mode == "export":
        _export(output)
    else:
        _train(output)


def cli() -> None:
    _common.run(main)
