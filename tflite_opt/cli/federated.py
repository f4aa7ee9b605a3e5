"""federated: FedAvg on the digits, every client training through a .tflite train signature.

    python scripts/federated.py --output_dir=outputs/federated
    python scripts/federated.py --clients=10 --rounds=20 --local_epochs=2 --dirichlet_alpha=0.5
    python scripts/federated.py --engine=flower --output_dir=outputs/federated_flower

Splits the digits' training images among --clients with a Dirichlet(--dirichlet_alpha) non-IID
split, exports the model as a trainable .tflite (builtin ops only), runs --rounds of federated
averaging in which each sampled client trains --local_epochs on its shard through the file's
train signature (--engine=local: this process; --engine=flower: Flower's simulation engine on
Ray), trains the same file on the pooled data for the same epochs as the baseline, and scores
both on the 3,240 augmented held-out digits through the file's infer signature. Writes
accuracy_per_round.md/.png, federated.json and model_train.tflite (the global model, still
trainable). Run again with the same flags to resume an interrupted run. Exit 0 on success,
2 with a one-line error on bad input.
"""

from __future__ import annotations

from absl import flags

from tflite_opt.cli import _common

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", "outputs/federated", "Folder for the table, plot, JSON and "
                    "model_train.tflite.")
flags.DEFINE_integer("clients", 10, "Number of clients.", lower_bound=1)
flags.DEFINE_integer("rounds", 20, "FedAvg rounds.", lower_bound=1, upper_bound=10000)
flags.DEFINE_integer("local_epochs", 2, "Epochs each client trains per round.", lower_bound=1)
flags.DEFINE_float("dirichlet_alpha", 0.5, "Dirichlet concentration of the non-IID split: 0.1 "
                   "gives each client a few classes, 100 is near IID.")
flags.DEFINE_enum("engine", "local", ["local", "flower"], "local: clients train in this process; "
                  "flower: Flower's simulation engine (Ray) runs them.")
flags.DEFINE_float("client_fraction", 1.0, "Share of clients sampled each round, in (0, 1].")
flags.DEFINE_float("dropout", 0.0, "Probability that a sampled client is a straggler whose "
                   "update never arrives, in [0, 1).")
flags.DEFINE_integer("seed", 0, "Seed of the split, initialization, sampling and shuffling.",
                     lower_bound=0, upper_bound=2**32 - 1)
flags.DEFINE_integer("batch_size", 32, "Client batch size.", lower_bound=1)
flags.DEFINE_enum("optimizer", "sgd", ["sgd", "adam"], "Optimizer in the .tflite train signature.")
flags.DEFINE_float("learning_rate", 0.05, "Its learning rate.")
flags.DEFINE_float("learning_rate_decay", 1.0, "Round r's clients train at learning_rate * "
                   "decay**(r-1) (the server sends it with each round), in (0, 1].")
flags.DEFINE_integer("hidden_units", 64, "Hidden units of the default model "
                     "(Flatten -> Dense(relu) -> Dense(softmax)).", lower_bound=1)
flags.DEFINE_integer("image_size", 32, "Side of the digits images.", lower_bound=8)
flags.DEFINE_string("model", None, "A Keras model (.keras/.h5) to federate instead of the "
                    "default one; input (image_size, image_size, 1), 10 classes.")
flags.DEFINE_string("trainable", "all", "Layers trained on the device: all, head, or "
                    "comma-separated layer names (the layers before are frozen into the file).")
flags.DEFINE_bool("centralized", True, "Also train the pooled-data baseline (same file, same "
                  "epochs) and report the difference with a 95% interval.")
flags.DEFINE_bool("trust_model", False, "Load --model even if it would run code from the file.")
flags.DEFINE_integer("max_parallel_clients", 1, "Ray actors training clients at once "
                     "(--engine=flower).", lower_bound=1)


def main(argv) -> None:
    _common.reject_extra_args(argv)
    from tflite_opt.federated.job import FederatedJobConfig, run_federated_job

    config = FederatedJobConfig(
        output_dir=FLAGS.output_dir, clients=FLAGS.clients, rounds=FLAGS.rounds,
        local_epochs=FLAGS.local_epochs, dirichlet_alpha=FLAGS.dirichlet_alpha,
        engine=FLAGS.engine, client_fraction=FLAGS.client_fraction, dropout=FLAGS.dropout,
        seed=FLAGS.seed, batch_size=FLAGS.batch_size, optimizer=FLAGS.optimizer,
        learning_rate=FLAGS.learning_rate, learning_rate_decay=FLAGS.learning_rate_decay,
        hidden_units=FLAGS.hidden_units,
        image_size=FLAGS.image_size, model=FLAGS.model, trainable=FLAGS.trainable,
        centralized=FLAGS.centralized, trust_model=FLAGS.trust_model,
        max_parallel_clients=FLAGS.max_parallel_clients)
    result = run_federated_job(config)
    fed = result.federated
    print()
    print(f"clients {fed.num_clients} (samples {min(fed.client_sizes)}-{max(fed.client_sizes)}), "
          f"rounds {fed.history[-1].round}, engine {fed.engine}"
          + (f", resumed after round {fed.resumed_from}" if fed.resumed_from else ""))
    print(f"federated accuracy   {100 * fed.accuracy:.2f}% (round 0: "
          f"{100 * fed.history[0].accuracy:.2f}%)")
    if result.centralized is not None:
        d = result.difference
        print(f"centralized accuracy {100 * result.centralized.accuracy:.2f}% (same .tflite, "
              f"pooled data, {result.centralized.epochs} epochs)")
        print(f"federated - centralized {100 * d.difference:+.2f} points, 95% CI "
              f"[{100 * d.ci95_low:+.2f}, {100 * d.ci95_high:+.2f}] on {d.num_images} images")
    print(f"outputs written to {result.files['model'].parent.resolve()}:")
    for path in sorted(result.files.values()):
        print(f"  {path.name}")


def cli() -> None:
    _common.run(main)


if __name__ == "__main__":
    cli()
