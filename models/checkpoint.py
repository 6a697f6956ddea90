"""Compact checkpoints of :class:`~models.layers.BinaryNet` models.

File format (``torch.save`` of a plain dict, loadable with ``weights_only=True``)::

    {"format": "fracbnn-checkpoint", "version": 1,
     "config": BinaryNet.config(),            # rebuilds the architecture
     "kind": "resnet",                        # only for a models.residual.ResNet (config =
                                              # ResNet.config()); absent: a BinaryNet
     "meta": {...},                           # JSON-serialisable (net name, recipe, accuracy, ...)
     "binary_weights": {"layers.0.weight": {"shape": [out, in], "bits": uint8 tensor}, ...},
     "tensors": {name: tensor}}               # every other parameter and buffer

Binary weights are stored as ``np.packbits`` of their sign bits (``w >= 0`` -> 1,
big-endian bit order within each byte, row-major (out, in)), so an LFC model is
about 0.4 MB.  Loading restores latent weights of exactly +1.0 / -1.0, which
binarise to the same signs, so eval outputs are identical to the saved model's.

Loading refuses, in one line (:class:`sw.errors.UserError`): a directory or missing file;
a file that is not an intact zip archive (torch's reader skips the CRC-32 of the members,
so every member is read and checked first: a flipped byte cannot load as a subtly
different network); a pickle holding anything but tensors and plain containers (torch's
weights-only loader; its advice and warnings are not shown); an architecture beyond the
compiled-network format's bounds (``sw.compiled_net.MAX_LAYERS``, ``MAX_LAYER_WEIGHTS``,
``MAX_MAP_VALUES``), checked on the meta device before any tensor is allocated; tensors
that do not match the architecture; NaN or infinite parameters.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sw.compiled_net import MAX_LAYER_WEIGHTS, MAX_LAYERS, MAX_MAP_VALUES
from sw.errors import UserError

from .layers import BinaryConv2d, BinaryDense, BinaryNet
from .residual import ResNet

__all__ = ["FORMAT", "VERSION", "save_checkpoint", "load_checkpoint"]

FORMAT = "fracbnn-checkpoint"
VERSION = 1


def _binary_weight_names(model: BinaryNet) -> list[str]:
    return [f"{name}.weight" for name, mod in model.named_modules() if isinstance(mod, BinaryDense)]


def save_checkpoint(model: BinaryNet, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write ``model`` to ``path`` atomically (temporary file + ``os.replace``).

    Parameters
    ----------
    model
        The model; its binary weights are stored as packed sign bits.
    path
        Destination file; parent directories are created.
    meta
        JSON-serialisable metadata stored alongside (e.g. net name, recipe, accuracy).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    meta = dict(meta or {})
    try:
        meta = json.loads(json.dumps(meta))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint meta must be JSON-serialisable: {exc}") from None
    binary_names = set(_binary_weight_names(model))
    state = model.state_dict()
    binary, tensors = {}, {}
    for name, value in state.items():
        if name in binary_names:
            bits = (value.detach().cpu().numpy() >= 0).astype(np.uint8)
            binary[name] = {"shape": list(bits.shape),
                            "bits": torch.from_numpy(np.packbits(bits.reshape(-1)))}
        else:
            tensors[name] = value.detach().cpu().clone()
    payload = {"format": FORMAT, "version": VERSION, "config": model.config(), "meta": meta,
               "binary_weights": binary, "tensors": tensors}
    if isinstance(model, ResNet):
        payload["kind"] = "resnet"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; checkpoints are shipped and shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _bad(path: Path, why: str, fix: str | None = None) -> UserError:
    return UserError(f"{path} is not a valid {FORMAT} v{VERSION} file ({why}); " + (
        fix or "re-create it with `python -m models.train` or use a shipped checkpoint"))


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _one_line(exc: BaseException) -> str:
    """The first line of an exception's message, without terminal colour codes, <= 200 chars."""
    text = _ANSI.sub("", str(exc)).strip()
    line = text.splitlines()[0].strip() if text else ""
    return (line or type(exc).__name__)[:200]


def _check_zip(path: Path) -> None:
    """Refuse a file that is not an intact zip archive (torch's own reader skips the CRCs)."""
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()  # reads every member and checks its CRC-32
    except zipfile.BadZipFile as exc:
        raise _bad(path, f"cannot be read: not an intact zip archive: {_one_line(exc)}") from None
    except OSError as exc:
        raise _bad(path, f"cannot be read: {exc.strerror or _one_line(exc)}") from None
    except Exception as exc:  # damaged headers make zipfile raise many types
        raise _bad(path, f"cannot be read: damaged zip structure: {_one_line(exc)}") from None
    if bad is not None:
        raise _bad(path, f"corrupt: zip member {bad} fails its CRC-32 check, the file changed "
                   "after it was written",
                   "copy it again from its source, re-create it with `python -m models.train` "
                   "or use a shipped checkpoint")


def _torch_load(path: Path) -> Any:
    """``torch.load`` with weights only, every failure (and warning) as one line of our own."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. pickle-protocol warnings naming torch's files
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's weights-only unpickler refused the pickle; its message advises
        # weights_only=False, i.e. running whatever code the file holds.
        text = _ANSI.sub("", str(exc))
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if found:
            why = (f"it pickles the Python object {found.group(1)}, e.g. a whole nn.Module saved "
                   "with torch.save(model), which is not loaded because unpickling it can run "
                   "code")
        else:
            found = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
            detail = found.group(1).strip()[:200] if found else _one_line(exc)
            why = (f"its pickle holds data the safe loader refuses: {detail}; it was not "
                   "written by save_checkpoint")
        raise _bad(path, why, "save the model with models.checkpoint.save_checkpoint(model, "
                   "path) or use a shipped checkpoint") from None
    except Exception as exc:  # torch raises many types for corrupt zip/pickle data
        raise _bad(path, f"cannot be read: {_one_line(exc)}") from None


def _int_sizes(config: dict):
    """``(name, value)`` of every int size in ``config`` (others are left to BinaryNet)."""
    def ints(key, value):
        if isinstance(value, int) and not isinstance(value, bool):
            yield key, value
    for key in ("input_shape", "hidden"):
        value = config.get(key)
        if isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                yield from ints(f"{key}[{i}]", v)
    yield from ints("classes", config.get("classes"))
    convs = config.get("convs")
    if isinstance(convs, (list, tuple)):
        for i, spec in enumerate(convs):
            if isinstance(spec, dict):
                for k, v in spec.items():
                    yield from ints(f"convs[{i}].{k}", v)


def _check_levels(path: Path, config: dict) -> None:
    levels = config.get("thermometer_levels")
    if isinstance(levels, int) and not isinstance(levels, bool) and not 1 <= levels <= 255:
        raise _bad(path, f"bad config: thermometer_levels {levels} is not in 1..255")


def _meta_model(path: Path, cls, config: dict):
    """``cls(**config)`` on the meta device (its own errors as one line), its input bits
    within ``MAX_MAP_VALUES``."""
    try:
        with torch.device("meta"):
            model = cls(**config)
    except (TypeError, ValueError, RuntimeError, OverflowError) as exc:
        raise _bad(path, f"bad config: {_one_line(exc)}") from None
    c, h, w = model.input_shape
    if c * h * w * model.thermometer.levels > MAX_MAP_VALUES:
        raise _bad(path, f"bad config: a {c}x{h}x{w} input with {model.thermometer.levels} "
                   f"thermometer levels has more than {MAX_MAP_VALUES} input bits")
    return model


def _build_meta(path: Path, config: dict) -> BinaryNet:
    """The architecture of ``config`` on the meta device (nothing allocated), size-checked.

    Bounds (sw.compiled_net): at most ``MAX_LAYERS`` layers, ``MAX_LAYER_WEIGHTS`` weights per
    layer and ``MAX_MAP_VALUES`` values per feature map, checked before any real tensor exists.
    """
    _check_levels(path, config)
    for name, value in _int_sizes(config):
        if value > MAX_LAYER_WEIGHTS:
            raise _bad(path, f"bad config: {name} is {value}, more than the format allows "
                       f"({MAX_LAYER_WEIGHTS})")
    depth = sum(len(config.get(k) or ()) for k in ("hidden", "convs")
                if isinstance(config.get(k), (list, tuple))) + 1
    if depth > MAX_LAYERS:
        raise _bad(path, f"bad config: {depth} layers, more than the format allows ({MAX_LAYERS})")
    model = _meta_model(path, BinaryNet, config)
    for i, layer in enumerate(model.layers):
        if layer.in_features * layer.out_features > MAX_LAYER_WEIGHTS:
            raise _bad(path, f"bad config: layer {i} has {layer.out_features}x"
                       f"{layer.in_features} weights, more than the format allows "
                       f"({MAX_LAYER_WEIGHTS})")
        if isinstance(layer, BinaryConv2d) and layer.out_height * layer.out_width \
                * layer.out_features > MAX_MAP_VALUES:
            raise _bad(path, f"bad config: layer {i} outputs a {layer.out_height}x"
                       f"{layer.out_width}x{layer.out_features} map, more than "
                       f"{MAX_MAP_VALUES} values")
    return model


def _build_meta_resnet(path: Path, config: dict) -> ResNet:
    """:func:`_build_meta` for a residual network's config (the same bounds: sizes, input
    bits, weights per convolution, values per feature map)."""
    _check_levels(path, config)
    for key in ("input_shape", "widths", "blocks"):
        value = config.get(key)
        for i, v in enumerate(value if isinstance(value, (list, tuple)) else [value]):
            if isinstance(v, int) and not isinstance(v, bool) and v > MAX_LAYER_WEIGHTS:
                raise _bad(path, f"bad config: {key}[{i}] is {v}, more than the format "
                           f"allows ({MAX_LAYER_WEIGHTS})")
    blocks, widths = config.get("blocks"), config.get("widths")
    if isinstance(blocks, int) and isinstance(widths, (list, tuple)):
        blocks = [blocks] * len(widths)
    if isinstance(blocks, (list, tuple)) and all(isinstance(b, int) for b in blocks) \
            and sum(blocks) + 2 > MAX_LAYERS:
        raise _bad(path, f"bad config: more than {MAX_LAYERS} layers")
    model = _meta_model(path, ResNet, config)
    for i, conv in enumerate(model.binary_convs()):
        if conv.in_features * conv.out_features > MAX_LAYER_WEIGHTS \
                or conv.out_height * conv.out_width * conv.out_features > MAX_MAP_VALUES:
            raise _bad(path, f"bad config: convolution {i} has more weights or outputs than "
                       f"the format allows")
    return model


def _check_finite(path: Path, name: str, value: torch.Tensor) -> None:
    if not value.is_floating_point():
        return
    finite = torch.isfinite(value)
    if bool(finite.all()):
        return
    nan = int(torch.isnan(value).sum())
    inf = value.numel() - int(finite.sum()) - nan
    what = " and ".join(f"{n} {kind}" for n, kind in ((nan, "NaN"), (inf, "infinite"))
                        if n)
    raise UserError(f"checkpoint {path}: tensor {name} holds {what} value(s) of "
                    f"{value.numel()} (did training diverge?); retrain it (e.g. with a lower "
                    "--lr) or use a shipped checkpoint")


def load_checkpoint(path: str | Path) -> tuple[BinaryNet, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    The file must be an intact zip archive (every member's CRC-32 is checked), hold only
    tensors and plain containers, declare an architecture within the compiled-network
    format's bounds (checked before anything is allocated) and have finite parameters.

    Returns
    -------
    model : BinaryNet or models.residual.ResNet
        In eval mode, latent binary weights exactly ±1.0.
    meta : dict
        The stored metadata.

    Raises
    ------
    UserError
        Missing, truncated, corrupt, wrong-format or wrong-version file, a directory,
        oversized architecture, NaN or infinite parameters.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"checkpoint {path} is a directory, not a file; pass the checkpoint "
                        f"file itself (e.g. {path / 'NAME.pt'})")
    if not path.exists():
        raise UserError(f"checkpoint {path} not found; train one with "
                        "`python -m models.train --net NAME` or pass an existing file")
    if not path.is_file():
        raise UserError(f"checkpoint {path} is not a regular file; pass a checkpoint (.pt) file")
    _check_zip(path)
    payload = _torch_load(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise _bad(path, "wrong format")
    if payload.get("version") != VERSION:
        raise _bad(path, f"version {payload.get('version')!r}, this code reads version {VERSION}")
    config, meta = payload.get("config"), payload.get("meta")
    binary, tensors = payload.get("binary_weights"), payload.get("tensors")
    if not (isinstance(config, dict) and isinstance(meta, dict)
            and isinstance(binary, dict) and isinstance(tensors, dict)):
        raise _bad(path, "missing config/meta/binary_weights/tensors")
    kind = payload.get("kind", "binary")
    if kind not in ("binary", "resnet"):
        raise _bad(path, f"unknown network kind {kind!r}")
    # Shapes come from the architecture on the meta device: nothing is allocated until the
    # file's tensors are known to match it.
    build_meta = _build_meta_resnet if kind == "resnet" else _build_meta
    expected = build_meta(path, config).state_dict()
    state = {}
    for name, ref in expected.items():
        if name in binary:
            entry = binary[name]
            if not (isinstance(entry, dict) and isinstance(entry.get("bits"), torch.Tensor)
                    and entry.get("shape") == list(ref.shape)):
                raise _bad(path, f"binary weight {name} has wrong shape")
            bits_t = entry["bits"]
            if bits_t.dtype != torch.uint8 or bits_t.numel() != (ref.numel() + 7) // 8:
                raise _bad(path, f"binary weight {name} has {bits_t.numel()} packed bytes")
            bits = np.unpackbits(bits_t.numpy(), count=ref.numel()).reshape(ref.shape)
            state[name] = torch.from_numpy(bits.astype(np.float32) * 2.0 - 1.0)
        elif name in tensors:
            value = tensors[name]
            if not isinstance(value, torch.Tensor) or value.shape != ref.shape or value.dtype != ref.dtype:
                raise _bad(path, f"tensor {name} has wrong shape or dtype")
            _check_finite(path, name, value)
            state[name] = value
        else:
            raise _bad(path, f"tensor {name} is missing")
    extra = (set(binary) | set(tensors)) - set(expected)
    if extra:
        raise _bad(path, f"unexpected tensors {sorted(extra)[:3]}")
    model = (ResNet if kind == "resnet" else BinaryNet)(**config)
    model.load_state_dict(state)
    model.eval()
    return model, meta
