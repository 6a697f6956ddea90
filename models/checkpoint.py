"""Compact checkpoints of :class:`~models.layers.BinaryNet` models.

File format (``torch.save`` of a plain dict, loadable with ``weights_only=True``)::

    {"format": "fracbnn-checkpoint", "version": 1,
     "config": BinaryNet.config(),            # rebuilds the architecture
     "meta": {...},                           # JSON-serialisable (net name, recipe, accuracy, ...)
     "binary_weights": {"layers.0.weight": {"shape": [out, in], "bits": uint8 tensor}, ...},
     "tensors": {name: tensor}}               # every other parameter and buffer

Binary weights are stored as ``np.packbits`` of their sign bits (``w >= 0`` -> 1,
big-endian bit order within each byte, row-major (out, in)), so an LFC model is
about 0.4 MB.  Loading restores latent weights of exactly +1.0 / -1.0, which
binarise to the same signs, so eval outputs are identical to the saved model's.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sw.errors import UserError

from .layers import BinaryDense, BinaryNet

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


def _bad(path: Path, why: str) -> UserError:
    return UserError(f"{path} is not a valid {FORMAT} v{VERSION} file ({why}); "
                     "re-create it with `python -m models.train` or use a shipped checkpoint")


def load_checkpoint(path: str | Path) -> tuple[BinaryNet, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Returns
    -------
    model : BinaryNet
        In eval mode, latent binary weights exactly ±1.0.
    meta : dict
        The stored metadata.

    Raises
    ------
    UserError
        Missing, truncated, corrupt, wrong-format or wrong-version file.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found; train one with "
                        "`python -m models.train --net NAME` or pass an existing file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt zip/pickle data
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _bad(path, f"cannot be read: {msg[:200]}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise _bad(path, "wrong format")
    if payload.get("version") != VERSION:
        raise _bad(path, f"version {payload.get('version')!r}, this code reads version {VERSION}")
    config, meta = payload.get("config"), payload.get("meta")
    binary, tensors = payload.get("binary_weights"), payload.get("tensors")
    if not (isinstance(config, dict) and isinstance(meta, dict)
            and isinstance(binary, dict) and isinstance(tensors, dict)):
        raise _bad(path, "missing config/meta/binary_weights/tensors")
    try:
        model = BinaryNet(**config)
    except (TypeError, ValueError) as exc:
        raise _bad(path, f"bad config: {exc}") from None
    expected = model.state_dict()
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
            state[name] = value
        else:
            raise _bad(path, f"tensor {name} is missing")
    extra = (set(binary) | set(tensors)) - set(expected)
    if extra:
        raise _bad(path, f"unexpected tensors {sorted(extra)[:3]}")
    model.load_state_dict(state)
    model.eval()
    return model, meta
