"""What clients and the server send each other, how it is checked, and how it travels as bytes.

A client update carries the weights a client trained, how many samples it trained on, who it
is, which round it answers, which model it trained (``model_version``: a digest of the
trainable ``.tflite`` file) and a digest of the weight specs (names, shapes, dtypes) it
believes the model has. The server accepts an update only if all of these fit its own state
(``validate_update``); anything else raises ``UpdateRejectedError`` with a reason code and a
message, and the global model is never touched (its arrays are read-only, and averaging
builds new arrays).

On the wire an update is an ``.npz``: one array per weight plus the metadata as a UTF-8 JSON
byte array. Loading never unpickles (``allow_pickle=False``) and reads every ``.npy`` header
first (numpy's own format readers, as ``tflite_opt.data.arrays``): the declared sizes are
checked against what the server expects and against the memory this process can use before
any array is allocated.

Example:
    >>> update = ClientUpdate(client_id=3, round=5, model_version=state.model_version,
    ...                       spec_digest=state.spec_digest, num_samples=140, weights=weights)
    >>> received = update_from_bytes(update_to_bytes(update), expect=state.specs)
    >>> validate_update(received, state)   # raises UpdateRejectedError if it does not fit
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import zipfile
from typing import Any, Iterable, Sequence

import numpy as np

from tflite_opt.data.arrays import read_npy_header
from tflite_opt.errors import DataError, UpdateRejectedError
from tflite_opt.limits import format_bytes, usable_memory_bytes

FORMAT = "tflite_opt.federated.update/1"
CHECKPOINT_FORMAT = "tflite_opt.federated.checkpoint/1"
MAX_META_BYTES = 4 * 2**20   # the JSON metadata (a checkpoint's history grows with rounds)
MAX_ARRAYS = 4096           # weight tensors in one message
_META = "meta"
ACCEPTED_DTYPES = ("float32", "float16", "float64", "int8", "int32", "int64", "uint8")


@dataclasses.dataclass(frozen=True)
class WeightSpec:
    """Name, shape and dtype of one trainable weight, in the order of ``get_weights()``."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @classmethod
    def of(cls, spec: Any) -> "WeightSpec":
        """From a ``WeightSpec``, a ``(name, shape, dtype)`` tuple (``OnDeviceTrainer.weight_specs``),
        a dict or an object with ``name``/``shape``/``dtype``."""
        if isinstance(spec, tuple) and not isinstance(spec, WeightSpec) and len(spec) == 3:
            name, shape, dtype = spec
        elif isinstance(spec, dict):
            name, shape, dtype = spec["name"], spec["shape"], spec["dtype"]
        else:
            name, shape, dtype = spec.name, spec.shape, spec.dtype
        return cls(str(name), tuple(int(d) for d in shape), np.dtype(dtype).name)


def specs_of(weights: Sequence[np.ndarray],
             names: Sequence[str] | None = None) -> tuple[WeightSpec, ...]:
    """The specs of a weight list (names default to ``weight_0``, ``weight_1``, ...)."""
    names = names or [f"weight_{i}" for i in range(len(weights))]
    return tuple(WeightSpec(n, tuple(np.shape(w)), np.asarray(w).dtype.name)
                 for n, w in zip(names, weights))


def spec_digest(specs: Iterable[Any]) -> str:
    """SHA-256 (hex, 16 characters) of the ordered names, shapes and dtypes.

    Example:
        >>> spec_digest(trainer.weight_specs)
        '3f1c0a9e5b7d2a41'
    """
    canonical = [[s.name, list(s.shape), s.dtype] for s in map(WeightSpec.of, specs)]
    return hashlib.sha256(json.dumps(canonical).encode()).hexdigest()[:16]


def model_version(tflite: bytes) -> str:
    """SHA-256 (hex, 16 characters) of the trainable ``.tflite`` every client runs."""
    return hashlib.sha256(bytes(tflite)).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class ClientUpdate:
    """One client's answer to one round.

    Attributes:
        client_id: The client (its shard's index).
        round: The server round this update answers (1-based).
        model_version: ``model_version()`` of the ``.tflite`` the client trained.
        spec_digest: ``spec_digest()`` of the weights it sends.
        num_samples: Samples it trained on (FedAvg's weight), > 0.
        weights: The trained weights, in ``weight_specs`` order.
        train_loss: Mean loss of its last local epoch (for reports); NaN if unknown.
    """

    client_id: int
    round: int
    model_version: str
    spec_digest: str
    num_samples: int
    weights: tuple[np.ndarray, ...]
    train_loss: float = float("nan")

    def meta(self) -> dict[str, Any]:
        return {"format": FORMAT, "client_id": int(self.client_id), "round": int(self.round),
                "model_version": self.model_version, "spec_digest": self.spec_digest,
                "num_samples": int(self.num_samples), "train_loss": float(self.train_loss)}


@dataclasses.dataclass(frozen=True)
class GlobalState:
    """The server's model: what updates are checked against, and what a checkpoint holds.

    ``weights`` are read-only arrays: an update cannot reach them in place, and a new round's
    state is a new ``GlobalState``.

    Attributes:
        round: Rounds completed; the next update must answer ``round + 1``.
        model_version: ``model_version()`` of the trainable ``.tflite``.
        specs: The weight specs, in order.
        weights: The global weights.
        extra: JSON-ready run information a checkpoint keeps (history, config).
    """

    round: int
    model_version: str
    specs: tuple[WeightSpec, ...]
    weights: tuple[np.ndarray, ...]
    extra: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        frozen = []
        for w in self.weights:
            w = np.array(w, copy=True)
            w.flags.writeable = False
            frozen.append(w)
        object.__setattr__(self, "weights", tuple(frozen))
        object.__setattr__(self, "specs", tuple(WeightSpec.of(s) for s in self.specs))

    @property
    def spec_digest(self) -> str:
        return spec_digest(self.specs)

    def fingerprint(self) -> str:
        """SHA-256 of the weights' bytes: equal fingerprints, byte-identical models."""
        digest = hashlib.sha256()
        for w in self.weights:
            digest.update(np.ascontiguousarray(w).tobytes())
        return digest.hexdigest()


def validate_update(update: ClientUpdate, state: GlobalState) -> None:
    """Checks that ``update`` answers the current round of ``state``'s model; never modifies either.

    Raises:
        UpdateRejectedError: with ``reason`` one of ``model_version``, ``stale_round``,
            ``future_round``, ``spec_digest``, ``count``, ``shape``, ``dtype``, ``non_finite``,
            ``num_samples``, ``client_id``.

    Example:
        >>> try:
        ...     validate_update(update, state)
        ... except UpdateRejectedError as exc:
        ...     print(exc.reason, exc)
    """
    who = f"update from client {update.client_id} for round {update.round}"
    if update.model_version != state.model_version:
        raise UpdateRejectedError(
            f"{who} was trained on model version {update.model_version}, the server's is "
            f"{state.model_version}; the client must download the current .tflite", "model_version")
    expected_round = state.round + 1
    if update.round != expected_round:
        late = update.round < expected_round
        raise UpdateRejectedError(
            f"{who} is {'stale' if late else 'from the future'}: the server is collecting round "
            f"{expected_round}", "stale_round" if late else "future_round")
    if not (isinstance(update.client_id, (int, np.integer)) and update.client_id >= 0):
        raise UpdateRejectedError(f"{who}: client_id must be an integer >= 0", "client_id")
    if not (isinstance(update.num_samples, (int, np.integer)) and update.num_samples > 0):
        raise UpdateRejectedError(f"{who} reports num_samples={update.num_samples!r}; FedAvg "
                                  "weights updates by sample count, which must be > 0",
                                  "num_samples")
    if update.spec_digest != state.spec_digest:
        raise UpdateRejectedError(f"{who} describes its weights with spec digest "
                                  f"{update.spec_digest}, the server's is {state.spec_digest}",
                                  "spec_digest")
    if len(update.weights) != len(state.specs):
        raise UpdateRejectedError(f"{who} has {len(update.weights)} weight arrays, the model has "
                                  f"{len(state.specs)}", "count")
    for spec, w in zip(state.specs, update.weights):
        w = np.asarray(w)
        if tuple(w.shape) != spec.shape:
            raise UpdateRejectedError(f"{who}: weight {spec.name!r} has shape {tuple(w.shape)}, "
                                      f"expected {spec.shape}", "shape")
        if w.dtype.name != spec.dtype:
            raise UpdateRejectedError(f"{who}: weight {spec.name!r} has dtype {w.dtype.name}, "
                                      f"expected {spec.dtype}", "dtype")
        if np.issubdtype(w.dtype, np.floating) and not np.isfinite(w).all():
            bad = int(np.size(w) - np.isfinite(w).sum())
            raise UpdateRejectedError(f"{who}: weight {spec.name!r} has {bad} NaN/Inf values "
                                      "(diverged local training?)", "non_finite")


# ---- bytes on the wire -------------------------------------------------------------------


def _pack(meta: dict, arrays: Sequence[np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    named = {f"w{i:04d}": np.ascontiguousarray(a) for i, a in enumerate(arrays)}
    meta_bytes = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    np.savez(buffer, **{_META: meta_bytes}, **named)
    return buffer.getvalue()


def _unpack(data: bytes, what: str, expect: Sequence[Any] | None,
            max_bytes: int | None) -> tuple[dict, list[np.ndarray]]:
    """Reads ``_pack``'s bytes, checking every header before reading any array."""
    limit = usable_memory_bytes() if max_bytes is None else max_bytes
    try:
        archive = zipfile.ZipFile(io.BytesIO(bytes(data)))
    except (zipfile.BadZipFile, ValueError) as exc:
        raise DataError(f"{what} is not an .npz message: {str(exc)[:200]}") from None
    with archive:
        members = {i.filename[:-4]: i for i in archive.infolist() if i.filename.endswith(".npy")}
        names = sorted(k for k in members if k != _META)
        if _META not in members:
            raise DataError(f"{what} has no metadata array; it was not written by "
                            "tflite_opt.federated")
        if len(members) > MAX_ARRAYS + 1 or names != [f"w{i:04d}" for i in range(len(names))]:
            raise DataError(f"{what} holds {len(members)} arrays with unexpected names; "
                            "expected meta and w0000..wNNNN")
        specs = None if expect is None else [WeightSpec.of(s) for s in expect]
        if specs is not None and len(specs) != len(names):
            raise UpdateRejectedError(f"{what} has {len(names)} weight arrays, the model has "
                                      f"{len(specs)}", "count")
        total = 0
        headers = {}
        for key, info in members.items():
            with archive.open(info) as member:
                header = read_npy_header(member, f"array {key!r} of {what}")
            if header.dtype.hasobject or header.dtype.name not in (*ACCEPTED_DTYPES, "uint8"):
                raise DataError(f"array {key!r} of {what} has dtype {header.dtype}; accepted: "
                                f"{', '.join(ACCEPTED_DTYPES)} (never pickled objects)")
            if info.file_size != header.header_bytes + header.nbytes:
                raise DataError(f"array {key!r} of {what} is truncated or corrupt: its header "
                                f"declares {header.nbytes} bytes, {info.file_size} are stored")
            headers[key] = header
            total += header.nbytes
        if headers[_META].nbytes > MAX_META_BYTES or len(headers[_META].shape) != 1:
            raise DataError(f"{what}'s metadata declares {format_bytes(headers[_META].nbytes)}, "
                            f"more than the {format_bytes(MAX_META_BYTES)} accepted")
        if specs is not None:
            for spec, key in zip(specs, names):
                h = headers[key]
                if h.shape != spec.shape or h.dtype.name != spec.dtype:
                    raise UpdateRejectedError(
                        f"{what}: weight {spec.name!r} is declared {h.shape} {h.dtype.name}, "
                        f"expected {spec.shape} {spec.dtype}",
                        "shape" if h.shape != spec.shape else "dtype")
        if total > limit:
            raise DataError(f"{what} declares {format_bytes(total)} of arrays, more than the "
                            f"{format_bytes(limit)} this process can allocate")
        try:
            with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as loaded:
                meta_bytes = loaded[_META]
                arrays = [loaded[k] for k in names]
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"could not read {what}: {str(exc)[:200]}") from None
    try:
        meta = json.loads(meta_bytes.astype(np.uint8).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{what}'s metadata is not UTF-8 JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise DataError(f"{what}'s metadata is not a JSON object")
    return meta, arrays


def update_to_bytes(update: ClientUpdate) -> bytes:
    """Serializes an update (``.npz`` bytes: metadata + one array per weight)."""
    return _pack(update.meta(), update.weights)


def update_from_bytes(data: bytes, *, expect: Sequence[Any] | None = None,
                      max_bytes: int | None = None) -> ClientUpdate:
    """Reads ``update_to_bytes``'s bytes without running code from them.

    Args:
        data: The bytes received.
        expect: The server's weight specs; when given, declared shapes and dtypes are checked
            against them before any array is read (an update declaring a 6 GiB weight is
            refused from its 128-byte header).
        max_bytes: Most bytes the arrays may declare together. Defaults to the memory this
            process can use.

    Raises:
        DataError: Not an update, pickled objects, truncated, too large, bad metadata.
        UpdateRejectedError: Declared shapes/dtypes/count do not match ``expect``.
    """
    meta, arrays = _unpack(data, "client update", expect, max_bytes)
    if meta.get("format") != FORMAT:
        raise DataError(f"client update has format {meta.get('format')!r}, expected {FORMAT!r}")
    try:
        return ClientUpdate(client_id=_as_int(meta["client_id"]), round=_as_int(meta["round"]),
                            model_version=str(meta["model_version"]),
                            spec_digest=str(meta["spec_digest"]),
                            num_samples=_as_int(meta["num_samples"]), weights=tuple(arrays),
                            train_loss=float(meta.get("train_loss", math.nan)))
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"client update metadata lacks or mistypes {exc}") from None


def _as_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"an integer field (got {value!r})")
    return value


def state_to_bytes(state: GlobalState) -> bytes:
    """Serializes the server's state for a checkpoint."""
    meta = {"format": CHECKPOINT_FORMAT, "round": state.round,
            "model_version": state.model_version,
            "specs": [[s.name, list(s.shape), s.dtype] for s in state.specs], "extra": state.extra}
    return _pack(meta, state.weights)


def state_from_bytes(data: bytes, what: str = "federated checkpoint") -> GlobalState:
    """Reads ``state_to_bytes``'s bytes (checked as ``update_from_bytes`` is)."""
    meta, _ = _peek_meta(data, what)
    try:
        specs = [WeightSpec(str(n), tuple(int(d) for d in shape), np.dtype(str(dt)).name)
                 for n, shape, dt in meta["specs"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{what}'s weight specs are unreadable: {exc}") from None
    meta, arrays = _unpack(data, what, specs, None)
    return GlobalState(round=_as_int(meta["round"]), model_version=str(meta["model_version"]),
                       specs=tuple(specs), weights=tuple(arrays), extra=dict(meta.get("extra") or {}))


def _peek_meta(data: bytes, what: str) -> tuple[dict, None]:
    """Only the metadata of a message (to learn a checkpoint's specs before reading weights)."""
    try:
        with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
            info = archive.getinfo(f"{_META}.npy")
            if info.file_size > MAX_META_BYTES + 256:
                raise DataError(f"{what}'s metadata is {format_bytes(info.file_size)}, more than "
                                f"the {format_bytes(MAX_META_BYTES)} accepted")
            with archive.open(info) as member:
                header = read_npy_header(member, f"metadata of {what}")
                if header.dtype != np.uint8 or len(header.shape) != 1:
                    raise DataError(f"{what}'s metadata is not a byte array")
                raw = member.read(header.nbytes)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise DataError(f"{what} is not a federated checkpoint: {str(exc)[:200]}") from None
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{what}'s metadata is not UTF-8 JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"{what} is not a {CHECKPOINT_FORMAT} file")
    return meta, None
