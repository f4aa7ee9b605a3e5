"""Suite `latency_pruning`: which sparsity patterns make LiteRT (XNNPACK) faster, measured.

tfmot's oldest open issue (tensorflow/model-optimization#173) is that pruning makes files
smaller, not faster. This suite prunes the digits CNN (``saved_models/digits_cnn.keras``) in
every pattern, fine-tunes each the same ``FINE_TUNE_EPOCHS`` (Adam ``FINE_TUNE_LR``, seed 0,
fixed before any run), converts each to float32 and full int8, and times all files of one
precision INTERLEAVED in one run (``tflite_opt.runtime.run_interleaved``) at the fastest
configuration that ``find_fastest_config`` finds for the dense file of that precision:

- ``dense``: the model as it is (and, as a control, the same model fine-tuned the same epochs);
- ``unstructured``: magnitude pruning to ``SPARSITY`` per kernel, encoded dense (zeros stored)
  and sparse (``EXPERIMENTAL_SPARSITY``; DENSIFY ops feed the weights);
- ``2:4``: two zeros in every four consecutive input weights (50%);
- ``block 1x4``: blocks of four consecutive input weights removed by block norm, to ``SPARSITY``;
- ``channels``: structured channel pruning (``tflite_opt.train.channel_pruning``) at ratios
  ``CHANNEL_RATIOS``, one-shot, and the headline ratio also in ``ITERATIVE_ROUNDS`` rounds
  (prune a share, fine-tune, prune more) with the same total epochs.

Magnitude patterns are made by one-shot masks held during fine-tuning (a callback re-applies
them after every batch), the same for each pattern so their accuracies compare; the default
recipe's gradual tfmot schedule is the `train` suite's subject. The masked layers are the
default policy's (the first conv and the classifier stay whole), and so are the pruned
channels'.

A separate probe tests XNNPACK's sparse inference ("Fast Sparse ConvNets", Elsen et al. 2020):
the delegate turns it on by itself (``XNN_FLAG_HINT_SPARSE_INFERENCE``) when a float model's
weights come through DENSIFY ops, and only for a subgraph that starts with a 3x3 stride-2
CONV_2D on 3 channels, holds 1x1 convs at >= 2/3 zeros and depthwise 3x3 convs, and ends in a
spatial MEAN. The probe is such a net (random He weights, 1x1 kernels zeroed by magnitude; speed
only, so no accuracy), converted dense and sparse-encoded.

Accuracy: top-1 through LiteRT on ``benchmarks.common.eval_data`` (3,240 augmented held-out
digits); drops are dense int8 minus pruned int8 on the same images with a paired bootstrap
95% interval (``tflite_opt.report.significance``).

Summary keys (stable): latency_ratio_vs_dense (headline channel-pruned int8 median / dense
int8 median, interleaved, fastest configuration), latency_ratio_vs_dense_float, accuracy_drop,
accuracy_drop_ci95_low, accuracy_drop_ci95_high, accuracy_drop_vs_fine_tuned_dense, pattern,
channel_ratio, macs_ratio, mobilenet_latency_ratio_vs_dense, mobilenet_accuracy_drop,
mobilenet_accuracy_drop_ci95_high, unstructured_latency_ratio_int8,
unstructured_sparse_float_ratio, sparse_inference_probe_ratio,
sparse_inference_probe_explicit_padding_ratio, int8_config, float_config, eval_images, cpu,
wall_s.
Accuracy drops are in points (percent).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from benchmarks.common import eval_data, example_float_model, tflite_correct
from tflite_opt.convert import convert
from tflite_opt.report.significance import paired_bootstrap_difference_ci
from tflite_opt.runtime.compare import Candidate, find_fastest_config, run_interleaved
from tflite_opt.runtime.cost import model_cost
from tflite_opt.runtime.host_cpu import host_cpu
from tflite_opt.runtime.inspection import inspect_model
from tflite_opt.train import LayerPolicy
from tflite_opt.train.channel_pruning import prune_channels
from tflite_opt.train.decompose import policy_skips
from tflite_opt.train.dispatch import deep_copy

SPARSITY = 0.75
CHANNEL_RATIOS = (0.5, 0.75)
HEADLINE_RATIO = 0.5  # the recipe's default (recipes/latency.yaml), chosen before any run
ITERATIVE_ROUNDS = 3
FINE_TUNE_EPOCHS = 6
FINE_TUNE_LR = 5e-4
NUM_RUNS = 400
PROBE_SPARSITY = (0.7, 0.9)
# A residual net too: the MobileNetV2-like builder, trained from scratch, then channel-pruned.
MOBILENET_EPOCHS = 12
PROBE_INPUT = (65, 65, 3)  # odd: TF "same" padding is then 1 on each side, as XNNPACK requires


# --- magnitude masks ---------------------------------------------------------------------------

def _unstructured(kernel: np.ndarray, sparsity: float) -> np.ndarray:
    threshold = np.quantile(np.abs(kernel), sparsity)
    return (np.abs(kernel) > threshold).astype(np.float32)


def _input_blocks(kernel: np.ndarray) -> np.ndarray:
    """The kernel as (blocks of 4 consecutive input weights, 4): input channels are the
    second-last axis of a Keras kernel, the innermost one of a TFLite weight."""
    moved = np.moveaxis(kernel, -2, -1)  # (..., out, in)
    return moved.reshape(-1, 4)


def _from_blocks(mask: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    moved_shape = np.moveaxis(kernel, -2, -1).shape
    return np.moveaxis(mask.reshape(moved_shape), -1, -2).astype(np.float32)


def _two_of_four(kernel: np.ndarray) -> np.ndarray:
    blocks = np.abs(_input_blocks(kernel))
    order = np.argsort(blocks, axis=1)
    mask = np.ones_like(blocks)
    np.put_along_axis(mask, order[:, :2], 0.0, axis=1)
    return _from_blocks(mask, kernel)


def _block_1x4(kernel: np.ndarray, sparsity: float) -> np.ndarray:
    norms = np.abs(_input_blocks(kernel)).sum(1)
    keep = norms > np.quantile(norms, sparsity)
    return _from_blocks(np.repeat(keep[:, None], 4, axis=1), kernel)


MASKS = {"unstructured": lambda k: _unstructured(k, SPARSITY), "2:4": _two_of_four,
         "block 1x4": lambda k: _block_1x4(k, SPARSITY)}


def _masked_layers(model) -> list:
    skip = set(policy_skips(model, LayerPolicy()))
    return [l for l in model.layers if l.name not in skip and l.get_weights() and
            type(l).__name__ in ("Conv2D", "Dense") and l.get_weights()[0].shape[-2] % 4 == 0]


def _hold_masks_callback(masks: dict):
    from tflite_opt._keras import keras

    class HoldMasks(keras.callbacks.Callback):
        """Re-applies fixed masks after every batch, so the optimizer cannot regrow zeros."""

        def on_train_batch_end(self, batch, logs=None):
            for layer, mask in masks.items():
                layer.kernel.assign(layer.kernel.numpy() * mask)

    return HoldMasks()


def _fine_tune(model, data, epochs: int, callbacks=()):
    from tflite_opt._keras import keras

    model.compile(keras.optimizers.Adam(FINE_TUNE_LR), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    keras.utils.set_random_seed(0)
    model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=32, verbose=0,
              callbacks=list(callbacks))
    return model


def _masked(model, data, pattern: str, epochs: int):
    model = deep_copy(model)
    masks = {}
    for layer in _masked_layers(model):
        weights = layer.get_weights()
        masks[layer] = MASKS[pattern](weights[0])
        layer.set_weights([weights[0] * masks[layer], *weights[1:]])
    model = _fine_tune(model, data, epochs, [_hold_masks_callback(masks)])
    zeros = sum(int((l.get_weights()[0] == 0).sum()) for l in masks)
    total = sum(int(l.get_weights()[0].size) for l in masks)
    return model, zeros / total


def _iterative_channels(model, data, ratio: float, rounds: int, epochs: int):
    """Prune ``rounds`` times, each keeping ``(1 - ratio) ** (1 / rounds)`` of the channels left,
    fine-tuning ``epochs / rounds`` epochs after each."""
    skip = policy_skips(model, LayerPolicy())
    current = model
    for k in range(1, rounds + 1):
        left = (1 - ratio) ** (k / rounds) / (1 - ratio) ** ((k - 1) / rounds)
        current = prune_channels(current, ratio=1 - left, skip=skip).model
        current = _fine_tune(current, data, max(1, epochs // rounds))
    return current


# --- the XNNPACK sparse-inference probe -------------------------------------------------------

def _probe_model(sparsity: float, seed: int = 0, explicit_padding: bool = False):
    """A MobileNetV1-shaped float net inside XNNPACK's sparse-inference rules, 1x1 kernels
    zeroed to ``sparsity`` by magnitude (0 = dense). With ``explicit_padding`` the stride-2
    convs are ZeroPadding2D(1) + "valid" (a PAD op that XNNPACK fuses into the conv as padding
    1 on each side) instead of TF "same" padding."""
    from tflite_opt._keras import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(PROBE_INPUT, name="image")

    def strided(layer_class, x, name, **kwargs):
        if not explicit_padding:
            return layer_class(kernel_size=3, strides=2, padding="same", name=name, **kwargs)(x)
        x = keras.layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
        return layer_class(kernel_size=3, strides=2, padding="valid", name=name, **kwargs)(x)

    x = strided(keras.layers.Conv2D, inputs, "stem", filters=16)
    x = keras.layers.ReLU(6.0)(x)
    for i, (channels, stride) in enumerate(((32, 1), (64, 2), (64, 1), (128, 2), (128, 1),
                                            (256, 2), (256, 1))):
        x = strided(keras.layers.DepthwiseConv2D, x, f"dw{i}") if stride == 2 else \
            keras.layers.DepthwiseConv2D(3, padding="same", name=f"dw{i}")(x)
        x = keras.layers.ReLU(6.0)(x)
        x = keras.layers.Conv2D(channels, 1, name=f"pw{i}")(x)
        x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10, name="classifier")(x))
    if sparsity:
        for layer in model.layers:
            if layer.name.startswith("pw"):
                w, b = layer.get_weights()
                layer.set_weights([w * _unstructured(w, sparsity), b])
    return model


def _probe(config: tuple[int, str]) -> tuple[list[list], float]:
    files = {"probe dense": convert(_probe_model(0.0), "float32", sparsity=False,
                                    progress=False).tflite_bytes}
    for s in PROBE_SPARSITY:
        model = _probe_model(s)
        files[f"probe 1x1 {s:.0%} zeros, dense encoding"] = convert(
            model, "float32", sparsity=False, progress=False).tflite_bytes
        files[f"probe 1x1 {s:.0%} zeros, sparse encoding"] = convert(
            model, "float32", sparsity=True, progress=False).tflite_bytes
    files["probe explicit padding dense"] = convert(
        _probe_model(0.0, explicit_padding=True), "float32", sparsity=False,
        progress=False).tflite_bytes
    top = PROBE_SPARSITY[-1]
    files[f"probe explicit padding 1x1 {top:.0%} zeros, sparse encoding"] = convert(
        _probe_model(top, explicit_padding=True), "float32", sparsity=True,
        progress=False).tflite_bytes
    result = _interleave(files, config)
    rows = []
    for label, data in files.items():
        r = result.result(label)
        ops = inspect_model(data).op_counts
        base = "probe explicit padding dense" if "explicit" in label else "probe dense"
        rows.append([label, round(r.stats.median_us, 1), round(result.ratio(label, base), 3),
                     ops.get("DENSIFY", 0), len(data), r.op_resolver_used])
    last = f"probe 1x1 {top:.0%} zeros, sparse encoding"
    explicit = f"probe explicit padding 1x1 {top:.0%} zeros, sparse encoding"
    return rows, (result.ratio(last, "probe dense"),
                  result.ratio(explicit, "probe explicit padding dense"))


def _interleave(files: dict[str, bytes], config: tuple[int, str]):
    threads, resolver = config
    candidates = [Candidate(label, label, threads, resolver) for label in files]
    return run_interleaved(candidates, num_runs=NUM_RUNS, warmup_runs=20, data=dict(files))


def _mobilenet(data, calibration, epochs: int, tune_epochs: int) -> tuple[list[list], dict]:
    """MobileNetV2-like (width 1): trained from scratch, pruned at ``HEADLINE_RATIO`` (residual
    adds tie the projections), fine-tuned; int8 files timed interleaved at 1 thread."""
    from tflite_opt._keras import keras
    from tflite_opt.models.efficient import mobilenet_v2_like

    keras.utils.set_random_seed(0)
    model = mobilenet_v2_like(data.input_shape, width=1.0)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=32, verbose=0)
    result = prune_channels(model, ratio=HEADLINE_RATIO,
                            skip=policy_skips(model, LayerPolicy()))
    thin = _fine_tune(result.model, data, tune_epochs)
    control = _fine_tune(deep_copy(model), data, tune_epochs)
    files = {name: convert(m, "int8", representative_data=calibration, progress=False).tflite_bytes
             for name, m in (("dense", model), ("dense + fine-tune", control),
                             (f"channels {HEADLINE_RATIO:.0%} one-shot", thin))}
    timing = _interleave(files, (1, "auto"))
    correct = {name: tflite_correct(f, data.x_test, data.y_test)[1] for name, f in files.items()}
    rows = []
    for name, tflite in files.items():
        r = timing.result(name)
        d = paired_bootstrap_difference_ci(correct["dense"], correct[name])
        rows.append([name, round(r.stats.median_us, 1), round(timing.ratio(name, "dense"), 3),
                     round(100 * float(correct[name].mean()), 2),
                     "-" if name == "dense" else f"{100 * d.difference:+.2f} "
                     f"[{100 * d.ci95_low:+.2f}, {100 * d.ci95_high:+.2f}]",
                     model_cost(tflite).macs, model_cost(tflite).parameters, len(tflite)])
    headline = f"channels {HEADLINE_RATIO:.0%} one-shot"
    drop = paired_bootstrap_difference_ci(correct["dense"], correct[headline])
    return rows, {"mobilenet_latency_ratio_vs_dense": timing.ratio(headline, "dense"),
                  "mobilenet_accuracy_drop": 100 * drop.difference,
                  "mobilenet_accuracy_drop_ci95_high": 100 * drop.ci95_high}


def _plot(rows: list[list], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=False)
    for ax, precision in zip(axes, ("float32", "int8")):
        mine = [r for r in rows if r[2] == precision]
        for r in mine:
            color = ("tab:gray" if r[0].startswith("dense") else
                     "tab:green" if r[0].startswith("channels") else "tab:red")
            ax.scatter(r[6], r[8], color=color)
            label = r[0].replace(", sparse encoding", " (sparse-encoded)")
            ax.annotate(label, (r[6], r[8]), fontsize=6, xytext=(3, 2), textcoords="offset points")
        ax.axvline(1.0, color="tab:gray", lw=0.6)
        ax.axvline(0.8, color="tab:green", lw=0.6, ls="--")
        ax.set_xlabel(f"median latency / dense {precision} (interleaved)")
        ax.set_ylabel(f"{precision} accuracy (%), LiteRT")
        ax.set_title(f"{precision}: magnitude patterns (red), channel pruning (green)",
                     fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _config_of(tflite: bytes) -> tuple[tuple[int, str], str]:
    best = find_fastest_config(tflite, threads=(1, 2), num_runs=100, warmup_runs=10)
    return (best.num_threads, best.op_resolver), best.summary


def run(output_dir: Path, quick: bool = False) -> dict:
    from tflite_opt._keras import keras

    start = time.perf_counter()
    data = eval_data(quick)
    calibration = data.x_train[:200]
    epochs = 1 if quick else FINE_TUNE_EPOCHS
    model, source = example_float_model(data, quick)

    variants: dict[str, tuple] = {}  # pattern -> (keras model, sparsity label, sparse-encode?)
    variants["dense"] = (model, "0%")
    variants["dense + fine-tune"] = (_fine_tune(deep_copy(model), data, epochs), "0%")
    for pattern in MASKS:
        masked, zeros = _masked(model, data, pattern, epochs)
        variants[pattern] = (masked, f"{zeros:.0%}")
    skip = policy_skips(model, LayerPolicy())
    channel_results = {}
    for ratio in CHANNEL_RATIOS:
        result = prune_channels(model, ratio=ratio, skip=skip)
        channel_results[ratio] = result
        variants[f"channels {ratio:.0%} one-shot"] = (
            _fine_tune(result.model, data, epochs), f"{ratio:.0%} of channels")
    keras.utils.set_random_seed(0)
    variants[f"channels {HEADLINE_RATIO:.0%} iterative x{ITERATIVE_ROUNDS}"] = (
        _iterative_channels(model, data, HEADLINE_RATIO, ITERATIVE_ROUNDS, epochs),
        f"{HEADLINE_RATIO:.0%} of channels")

    files: dict[str, dict[str, bytes]] = {"float32": {}, "int8": {}}
    encodings: dict[str, str] = {}
    for name, (keras_model, _) in variants.items():
        files["float32"][name] = convert(keras_model, "float32", sparsity=False,
                                         progress=False).tflite_bytes
        files["int8"][name] = convert(keras_model, "int8", representative_data=calibration,
                                      sparsity=False, progress=False).tflite_bytes
        encodings[name] = "dense"
    sparse_name = "unstructured, sparse encoding"
    files["float32"][sparse_name] = convert(variants["unstructured"][0], "float32",
                                            sparsity=True, progress=False).tflite_bytes
    files["int8"][sparse_name] = convert(variants["unstructured"][0], "int8",
                                         representative_data=calibration, sparsity=True,
                                         progress=False).tflite_bytes
    variants[sparse_name] = variants["unstructured"]
    encodings[sparse_name] = "sparse (DENSIFY / sparse weights)"

    configs, config_notes, timings = {}, {}, {}
    for precision in files:
        configs[precision], config_notes[precision] = _config_of(files[precision]["dense"])
        timings[precision] = _interleave(files[precision], configs[precision])

    correct: dict[tuple[str, str], np.ndarray] = {}
    rows = []
    for precision, by_name in files.items():
        dense_cost = model_cost(by_name["dense"])
        for name, tflite in by_name.items():
            _, ok = tflite_correct(tflite, data.x_test, data.y_test)
            correct[(precision, name)] = ok
            r = timings[precision].result(name)
            cost = model_cost(tflite)
            ops = inspect_model(tflite).op_counts
            rows.append([name, variants[name][1], precision, encodings[name],
                         round(r.stats.median_us, 1), round(r.q3_us - r.q1_us, 1),
                         round(timings[precision].ratio(name, "dense"), 3),
                         timings[precision].distinguishable[name]["dense"] if name != "dense"
                         else "-",
                         round(100 * float(ok.mean()), 2), cost.macs,
                         round(cost.macs / dense_cost.macs, 3), len(tflite),
                         r.gzip_bytes, ops.get("DENSIFY", 0), r.op_resolver_used])
    _plot([[r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8]] for r in rows],
          output_dir / "latency_pruning.png")

    headline = f"channels {HEADLINE_RATIO:.0%} one-shot"
    drop = paired_bootstrap_difference_ci(correct[("int8", "dense")], correct[("int8", headline)])
    control = paired_bootstrap_difference_ci(correct[("int8", "dense + fine-tune")],
                                             correct[("int8", headline)])
    iterative = f"channels {HEADLINE_RATIO:.0%} iterative x{ITERATIVE_ROUNDS}"
    vs_iterative = paired_bootstrap_difference_ci(correct[("int8", iterative)],
                                                  correct[("int8", headline)])
    drop_rows = []
    for name in files["int8"]:
        if name == "dense":
            continue
        d = paired_bootstrap_difference_ci(correct[("int8", "dense")], correct[("int8", name)])
        drop_rows.append([name, f"{100 * d.difference:+.2f} [{100 * d.ci95_low:+.2f}, "
                                f"{100 * d.ci95_high:+.2f}]"])

    probe_rows, (probe_ratio, probe_explicit_ratio) = _probe(configs["float32"])
    mobilenet_rows, mobilenet_summary = _mobilenet(data, calibration,
                                                   2 if quick else MOBILENET_EPOCHS, epochs)
    layer_rows = [[f"{ratio:.0%}", l.name, l.kind, l.channels_before, l.channels_after,
                   l.reason or (f"tied with {', '.join(l.tied_with)}" if l.tied_with else "-")]
                  for ratio, result in channel_results.items() for l in result.layers]

    summary = {
        "latency_ratio_vs_dense": timings["int8"].ratio(headline, "dense"),
        "latency_ratio_vs_dense_float": timings["float32"].ratio(headline, "dense"),
        "latency_distinguishable": bool(timings["int8"].distinguishable[headline]["dense"]),
        "accuracy_drop": 100 * drop.difference,
        "accuracy_drop_ci95_low": 100 * drop.ci95_low,
        "accuracy_drop_ci95_high": 100 * drop.ci95_high,
        "accuracy_drop_vs_fine_tuned_dense": 100 * control.difference,
        "one_shot_minus_iterative_accuracy": -100 * vs_iterative.difference,
        "pattern": f"structured channel pruning, {HEADLINE_RATIO:.0%} of output channels, "
                   "one-shot + fine-tune, int8",
        "channel_ratio": HEADLINE_RATIO,
        "macs_ratio": model_cost(files["int8"][headline]).macs /
        model_cost(files["int8"]["dense"]).macs,
        "unstructured_latency_ratio_int8": timings["int8"].ratio("unstructured", "dense"),
        "unstructured_sparse_float_ratio": timings["float32"].ratio(sparse_name, "dense"),
        "sparse_inference_probe_ratio": probe_ratio,
        "sparse_inference_probe_explicit_padding_ratio": probe_explicit_ratio,
        **mobilenet_summary,
        "int8_config": f"{configs['int8'][0]} thread(s), {configs['int8'][1]}",
        "float_config": f"{configs['float32'][0]} thread(s), {configs['float32'][1]}",
        "eval_images": int(len(data.y_test)),
        "cpu": host_cpu().describe(),
        "wall_s": time.perf_counter() - start,
    }
    tables = [
        {"title": "Every pattern, timed interleaved per precision at the dense file's fastest "
                  f"configuration; accuracy on {len(data.y_test)} augmented held-out digits",
         "columns": ["pattern", "sparsity", "precision", "weights", "median us", "IQR us",
                     "ratio vs dense", "distinguishable", "accuracy %", "MACs (file)",
                     "MACs ratio", "bytes", "gzip bytes", "DENSIFY ops", "kernels"],
         "rows": rows,
         "note": (f"Digits CNN ({source}); every variant fine-tuned {epochs} epochs, Adam lr "
                  f"{FINE_TUNE_LR}, seed 0. Fastest configurations: int8: "
                  f"{config_notes['int8']}; float32: {config_notes['float32']}. "
                  "'distinguishable': the interquartile ranges do not overlap. 'kernels': "
                  "auto = XNNPACK; no_xnnpack = LiteRT's builtin kernels (the sparse int8 file "
                  "falls back to them, see BUILD_NOTES). MACs are read from the .tflite "
                  "(tflite_opt.runtime.cost): zeros in a kernel still cost their MACs.")},
        {"title": "int8 accuracy drop vs the dense int8 file, points [paired bootstrap 95% CI]",
         "columns": ["pattern", "drop (positive = lost)"], "rows": drop_rows},
        {"title": "XNNPACK sparse inference probe (float32, Fast-Sparse-ConvNets-shaped net, "
                  "random weights: speed only)",
         "columns": ["file", "median us", "ratio vs its dense twin", "DENSIFY ops", "bytes",
                     "kernels"],
         "rows": probe_rows,
         "note": (f"Input {PROBE_INPUT}, 3x3 stride-2 stem on 3 channels, 7 depthwise 3x3 + "
                  "1x1 blocks, spatial MEAN, then the classifier; same configuration as the "
                  "float32 table, interleaved.")},
        {"title": "MobileNetV2-like (residual adds tie channels), int8, 1 thread, interleaved",
         "columns": ["variant", "median us", "ratio vs dense", "accuracy %",
                     "drop, points [95% CI]", "MACs (file)", "parameters (file)", "bytes"],
         "rows": mobilenet_rows,
         "note": (f"tflite_opt.models.efficient.mobilenet_v2_like, width 1, trained from scratch "
                  f"{2 if quick else MOBILENET_EPOCHS} epochs (Adam 1e-3, seed 0), then "
                  f"{HEADLINE_RATIO:.0%} of the channels of every prunable channel space "
                  f"removed and {epochs} epochs of fine-tuning; the control fine-tunes the "
                  "dense model as long. Its accuracy is low for the reason the decompose "
                  "suite gives (1,437 unaugmented training images, no dropout).")},
        {"title": "Channels per layer", "columns": ["ratio", "layer", "kind", "before", "after",
                                                    "note"], "rows": layer_rows},
    ]
    return {"summary": summary, "tables": tables,
            "details": {"fine_tune_epochs": epochs, "fine_tune_lr": FINE_TUNE_LR,
                        "num_runs": NUM_RUNS, "sparsity": SPARSITY,
                        "channel_ratios": list(CHANNEL_RATIOS),
                        "configs": {k: list(v) for k, v in configs.items()}}}
