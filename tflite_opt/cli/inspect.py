"""inspect: what is inside a .tflite file, read from the flatbuffer without running it.

    python scripts/inspect.py --model=model.tflite [--json]

Prints ops and their counts, inputs and outputs with quantization, signatures,
tensor dtypes, every constant tensor's size, sparsity and unique-value count
(pruning and clustering verified on the file), the size by layer and the
GPU-delegate compatibility (from the delegate's documented op and type support), and the
TFLite metadata (name, normalization, labels) that MediaPipe Tasks reads.
Exit 0 on success, 2 with a one-line error on bad input.
"""

from __future__ import annotations

import json
import sys

from absl import flags

from tflite_opt.cli import _common

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "The .tflite file to inspect.")
flags.DEFINE_bool("json", False, "Print the inspection as JSON instead of tables.")
flags.DEFINE_string("output", None, "Also write the JSON inspection to this file.")
flags.DEFINE_bool("tensors", False, "Also list every tensor (not only constants).")


def _quant_text(q: dict) -> str:
    if not q["scale"]:
        return "-"
    if len(q["scale"]) == 1:
        return f"scale={q['scale'][0]:.6g} zero_point={q['zero_point'][0]}"
    return f"per-channel axis {q['axis']} ({len(q['scale'])} scales)"


def _metadata_text(md: dict | None) -> str:
    """The TFLite metadata section: what MediaPipe Tasks and ML Model Binding will read."""
    if md is None:
        return "TFLite metadata: none (MediaPipe Tasks and ML Model Binding need it; re-save " \
               "without --nometadata)"
    if "unreadable" in md:
        return f"TFLite metadata: present but unreadable here: {md['unreadable']}"
    lines = [f"TFLite metadata (min parser {md['min_parser_version']}):"]
    lines += [f"  {key}: {md[key]}" for key in ("name", "description", "version", "author",
                                                 "license") if md.get(key)]
    for kind in ("inputs", "outputs"):
        for t in md[kind]:
            facts = [t.get("content") or "", t.get("color_space") or ""]
            if "normalization" in t:
                norm = t["normalization"]
                facts.append(f"normalization (pixel - {norm['mean']}) / {norm['std']}")
            if "range" in t:
                facts.append(f"range {t['range'][0]}..{t['range'][1]}")
            if "labels" in t:
                shown = ", ".join(t["labels"][:10]) + (", ..." if len(t["labels"]) > 10 else "")
                facts.append(f"{len(t['labels'])} labels [{shown}]")
            lines.append(f"  {kind[:-1]} {t['name']!r}: {'; '.join(f for f in facts if f)}")
    if md["associated_files"]:
        files = ", ".join(f"{k} ({v} bytes)" for k, v in md["associated_files"].items())
        lines.append(f"  attached files: {files}")
    return "\n".join(lines)


def render(info) -> str:
    """The human-readable report of an ``Inspection``."""
    from tflite_opt.runtime._table import format_table

    out = [f"{info.model}: {info.size_bytes} bytes, {info.num_subgraphs} subgraph(s), "
           f"{sum(info.op_counts.values())} nodes"]
    out.append(format_table(["op", "count"], [[k, v] for k, v in info.op_counts.items()],
                            "ops"))
    out.append(format_table(
        ["io", "name", "dtype", "shape", "quantization"],
        [[kind, t["name"], t["dtype"], t["shape_signature"], _quant_text(t["quantization"])]
         for kind, group in (("input", info.inputs), ("output", info.outputs)) for t in group],
        "inputs and outputs"))
    if info.signatures:
        out.append(format_table(
            ["signature", "inputs", "outputs"],
            [[k, ", ".join(v["inputs"]), ", ".join(v["outputs"])]
             for k, v in info.signatures.items()], "signatures"))
    out.append(format_table(["dtype", "tensors"], [[k, v] for k, v in info.dtype_counts.items()],
                            "tensor dtypes"))
    out.append(format_table(
        ["constant", "layer", "role", "dtype", "shape", "bytes", "sparsity", "unique",
         "max_unique/ch"],
        [[w["name"][:48], w["layer"], w["role"], w["dtype"], w["shape"], w["size_bytes"],
          None if w["sparsity"] is None else round(w["sparsity"], 4), w["unique_values"],
          w["max_unique_per_channel"]] for w in info.weights],
        "constant tensors (sparsity: share of values equal to zero, zero point if quantized)"))
    if FLAGS.tensors:
        out.append(format_table(
            ["index", "name", "dtype", "shape", "bytes", "constant", "quantization"],
            [[t["index"], t["name"][:48], t["dtype"], t["shape"], t["size_bytes"],
              t["is_constant"], _quant_text(t["quantization"])] for t in info.tensors],
            "tensors"))
    rows = [[k, v, round(100 * v / info.size_bytes, 1)] for k, v in info.layer_sizes.items()]
    rows.append(["(graph structure and metadata)", info.graph_bytes,
                 round(100 * info.graph_bytes / info.size_bytes, 1)])
    out.append(format_table(["layer", "bytes", "percent"], rows, "size by layer"))
    out.append(_metadata_text(info.metadata))
    gpu = info.gpu
    verdict = "compatible" if gpu.compatible else "NOT compatible"
    lines = [f"GPU delegate: {verdict} ({gpu.supported_nodes} of "
             f"{gpu.supported_nodes + gpu.unsupported_nodes} nodes supported; {gpu.source})"]
    lines += [f"  {op}: {reason}" for op, reason in gpu.unsupported_ops]
    out.append("\n".join(lines))
    return "\n\n".join(out)


def main(argv) -> int:
    _common.reject_extra_args(argv)
    from tflite_opt.errors import InvalidArgumentError
    from tflite_opt.files import atomic_write_json
    from tflite_opt.runtime import inspect_model

    if not FLAGS.model:
        raise InvalidArgumentError("--model is required: pass --model=FILE.tflite")
    if FLAGS.output:  # checked before reading: the model and its sidecar must survive a typo
        _common.check_output(FLAGS.output, models=[FLAGS.model])
    info = inspect_model(FLAGS.model)
    if FLAGS.output:
        atomic_write_json(FLAGS.output, info.to_dict())
    if FLAGS.json:
        json.dump(info.to_dict(), sys.stdout, indent=2, default=str)
        print()
    else:
        print(render(info))
    return 0


def cli() -> None:
    flags.mark_flag_as_required("model")
    _common.run(main)


if __name__ == "__main__":
    cli()
