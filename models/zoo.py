"""The model zoo and network descriptions: an architecture plus its training recipe, in a file.

A *network description* is a small TOML (or JSON) file::

    description = "784-256-256-10, FracBNN 2-bit activations"   # optional, one line

    [network]                 # keyword arguments of models.layers.BinaryNet
    input_shape = [1, 28, 28] # (C, H, W) of the 8-bit images; C = 3 for CIFAR-10 files
    thermometer_levels = 2    # T binary planes per input channel
    hidden = [256, 256]       # dense hidden layer widths
    activation = "frac2"      # "sign" (1-bit) or "frac2" (FracBNN 2-bit, precision gating)
    classes = 10
    dropout = 0.1             # training only
    batch_norm = true         # false: no batch norm (fixed accumulator scale + bias)

    [[network.convs]]         # optional convolutions before the dense layers, in order
    channels = 16
    kernel = 3
    pad = 1                   # stride = 1, pad = 0, pool = 0 (2 = 2x2 max-pool) by default
    pool = 2

A residual network (:class:`models.residual.ResNet`, fixed-point shortcut path) says
``kind = "resnet"`` in ``[network]``, whose other keys are then the ``ResNet`` arguments::

    [network]
    kind = "resnet"
    input_shape = [1, 32, 32] # MNIST centred in 32x32
    thermometer_levels = 2
    widths = [16, 32, 64]     # channels per stage (each the previous one or twice it)
    blocks = 3                # blocks per stage (one int, or one per stage)
    activation = "frac2"      # "sign" or "frac2" in every block
    classes = 10              # optional: weight_bits (classifier), fmt_bits, fmt_frac
    pool_shift = 6            # optional: the global pool's sums / 2**pool_shift (6: 8x8 average)

    [recipe]                  # training defaults (see RECIPE_KEYS); missing keys take DEFAULT_RECIPE
    epochs = 5
    lr = 0.003
    method = "bp"             # bp, dfa, drtp or selfbin (models.methods)

``python -m models.train --net FILE.toml`` trains it; the checkpoint stores the architecture
(:meth:`BinaryNet.config`) and the description, so export, simulation and builds work as for
the zoo.  The zoo entries are such files, shipped in ``models/nets/<name>.toml``
(``--net NAME``); trained checkpoints ship as ``models/checkpoints/<name>.pt``.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import torch

from sw.errors import UserError

from .layers import BinaryNet
from .methods import EXACT_FRACTION, SLOPE_FINAL, check_recipe
from .residual import ResNet

__all__ = ["ZooEntry", "ZOO", "DEFAULT_RECIPE", "RECIPE_KEYS", "NETS_DIR", "CHECKPOINT_DIR",
           "SOURCE_CHECKOUT", "KINDS",
           "names", "build", "recipe", "default_checkpoint", "load_description", "check_recipe_values",
           "parse_description", "resolve"]

#: Directory of the shipped checkpoints.
CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
#: Whether this is a source checkout (the repository, or ``pip install -e``): only then does
#: training a zoo network default to replacing its shipped checkpoint; an installed package
#: never writes into site-packages (``./<name>.pt`` instead).
SOURCE_CHECKOUT = (Path(__file__).resolve().parents[1] / "pyproject.toml").is_file()
#: Directory of the zoo's network descriptions (``<name>.toml``).
NETS_DIR = Path(__file__).resolve().parent / "nets"


@dataclass(frozen=True)
class ZooEntry:
    """One network description.

    Attributes
    ----------
    description
        One line for humans.
    arch
        Keyword arguments of :class:`BinaryNet`.
    recipe
        Training defaults: ``epochs``, ``lr`` (Adam, peak), ``lr_final`` (end of the
        cosine decay), ``batch_size``, ``seed``, ``gate_lambda`` (weight of the gate
        sparsity penalty), ``gate_lr_scale`` (learning-rate multiplier of ``gate_delta``,
        which lives on the integer accumulator scale), ``warmup_epochs``, ``max_shift``
        (random translation of training images by up to this many pixels, 0 = off),
        ``exit_weight`` (weight of each early exit's cross-entropy in the joint loss; the
        last layer's has weight 1),
        ``method`` (:data:`models.methods.METHODS`), ``slope_final`` and ``exact_fraction``
        (``selfbin``: the last slope of ``tanh(s x)`` and the fraction of the steps trained
        with the exact sign).
    name
        The zoo name or the description file's stem.
    kind
        ``"binary"`` (:class:`BinaryNet`) or ``"resnet"`` (:class:`models.residual.ResNet`,
        ``[network] kind = "resnet"``); ``arch`` holds the constructor's arguments only.
    """

    description: str
    arch: Mapping[str, Any]
    recipe: Mapping[str, Any] = field(default_factory=dict)
    name: str = ""
    kind: str = "binary"

    def build(self) -> BinaryNet | ResNet:
        """A freshly initialised (untrained) model of this architecture."""
        return (ResNet if self.kind == "resnet" else BinaryNet)(**self.arch)

    def to_dict(self) -> dict:
        """Plain containers (what a checkpoint stores; :func:`parse_description` reads it back)."""
        network = _plain(self.arch)
        if self.kind != "binary":
            network = {"kind": self.kind, **network}
        return {"description": self.description, "network": network,
                "recipe": dict(self.recipe)}


#: Training defaults of a description's ``[recipe]``.
DEFAULT_RECIPE = MappingProxyType({
    "epochs": 10, "lr": 3e-3, "lr_final": 3e-5, "batch_size": 128, "seed": 0,
    "gate_lambda": 0.0, "gate_lr_scale": 1.0, "warmup_epochs": 0, "max_shift": 0,
    "exit_weight": 1.0, "method": "bp", "slope_final": SLOPE_FINAL,
    "exact_fraction": EXACT_FRACTION, "recalibrate_images": 0,
    "finetune_epochs": (), "finetune_lr": 1e-3})
#: Recipe keys and their types.
RECIPE_KEYS = MappingProxyType({
    "epochs": int, "lr": float, "lr_final": float, "batch_size": int, "seed": int,
    "gate_lambda": float, "gate_lr_scale": float, "warmup_epochs": int, "max_shift": int,
    "exit_weight": float, "method": str, "slope_final": float, "exact_fraction": float,
    "recalibrate_images": int, "finetune_epochs": tuple, "finetune_lr": float})
#: Network kinds of ``[network] kind`` (default ``"binary"``).
KINDS = ("binary", "resnet")
_NETWORK_KEYS = ("input_shape", "thermometer_levels", "hidden", "activation", "classes",
                 "dropout", "thermometer_thresholds", "convs", "exits", "batch_norm")
_RESNET_KEYS = ("input_shape", "thermometer_levels", "thermometer_thresholds", "widths",
                "blocks", "activation", "classes", "weight_bits", "fmt_bits", "fmt_frac",
                "pool_shift")
#: Methods a residual network trains with (dfa/drtp need a layer chain).
_RESNET_METHODS = ("bp", "selfbin")


def _plain(value):
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def parse_description(data: Any, source: str, name: str) -> ZooEntry:
    """Check a description's plain data (from TOML/JSON) and build a :class:`ZooEntry`.

    Raises :class:`UserError` naming ``source`` and the offending key: unknown or missing
    sections and keys, wrong types, out-of-range recipe values, or an architecture
    :class:`BinaryNet` refuses.
    """
    def bad(why: str) -> UserError:
        return UserError(f"{source}: {why}; see `python -m models.train --help` and "
                         f"docs/models.md, \"Describing a network\"")

    if not isinstance(data, dict):
        raise bad("a network description must be a table with [network] and [recipe]")
    unknown = set(data) - {"description", "network", "recipe"}
    if unknown:
        raise bad(f"unknown top-level key(s) {sorted(unknown)} (allowed: description, network, "
                  f"recipe)")
    network = data.get("network")
    if not isinstance(network, dict):
        raise bad("missing [network] table (the BinaryNet arguments)")
    network = dict(network)
    net_kind = network.pop("kind", "binary")
    if net_kind not in KINDS:
        raise bad(f"network.kind must be one of {', '.join(repr(k) for k in KINDS)}, "
                  f"not {net_kind!r}")
    allowed = _RESNET_KEYS if net_kind == "resnet" else _NETWORK_KEYS
    unknown = set(network) - set(allowed)
    if unknown:
        raise bad(f"unknown [network] key(s) {sorted(unknown)} for kind {net_kind!r} "
                  f"(allowed: kind, {', '.join(allowed)})")
    if net_kind == "resnet":
        if "input_shape" not in network or "widths" not in network:
            raise bad("[network] of kind \"resnet\" needs input_shape and widths")
    elif "input_shape" not in network or ("hidden" not in network and "convs" not in network):
        raise bad("[network] needs input_shape and hidden (or convs)")
    rec = data.get("recipe", {})
    if not isinstance(rec, dict):
        raise bad("[recipe] must be a table")
    unknown = set(rec) - set(RECIPE_KEYS)
    if unknown:
        raise bad(f"unknown [recipe] key(s) {sorted(unknown)} (allowed: {', '.join(RECIPE_KEYS)})")
    merged = dict(DEFAULT_RECIPE)
    for key, value in rec.items():
        kind = RECIPE_KEYS[key]
        if kind is tuple:
            merged[key] = finetune_stages(value, f"recipe.{key}")
            continue
        if kind is str:
            if not isinstance(value, str):
                raise bad(f"recipe.{key} must be a string, not {value!r}")
            merged[key] = value
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or (kind is int and not isinstance(value, int)) or not math.isfinite(value):
            raise bad(f"recipe.{key} must be {'an integer' if kind is int else 'a number'}, "
                      f"not {value!r}")
        merged[key] = kind(value)
    try:
        check_recipe_values(merged)
    except UserError as exc:
        raise bad(str(exc)) from None
    if net_kind == "resnet" and merged["method"] not in _RESNET_METHODS:
        raise bad(f"recipe.method {merged['method']!r} cannot train a residual network; "
                  f"choose one of {', '.join(_RESNET_METHODS)}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise bad(f"description must be a string, not {description!r}")
    entry = ZooEntry(description, MappingProxyType(network), MappingProxyType(merged), name,
                     net_kind)
    try:
        with torch.device("meta"):      # checks the architecture; allocates nothing
            entry.build()
    except (ValueError, TypeError) as exc:
        raise bad(f"[network] is not a valid architecture: {' '.join(str(exc).split())}") from None
    return entry


def check_recipe_values(recipe: Mapping[str, Any], prefix: str = "recipe.",
                        spell=lambda key: key) -> None:
    """Raise :class:`UserError` (one line) unless every value of a complete ``recipe`` is in
    range; a key is named ``prefix + spell(key)`` (``"recipe.max_shift"`` for a description
    file, ``"--max-shift"`` for a command-line override)."""
    def name(key):
        return prefix + spell(key)

    for key, low in (("epochs", 1), ("batch_size", 1), ("warmup_epochs", 0), ("seed", 0)):
        if recipe[key] < low:
            raise UserError(f"{name(key)} must be >= {low}, not {recipe[key]}")
    if not recipe["lr"] > 0:
        raise UserError(f"{name('lr')} must be > 0, not {recipe['lr']}")
    if not recipe["lr_final"] >= 0:
        raise UserError(f"{name('lr_final')} must be >= 0, not {recipe['lr_final']}")
    if not 0 <= recipe["max_shift"] <= 8:
        raise UserError(f"{name('max_shift')} must be in 0..8 pixels, not {recipe['max_shift']}")
    if recipe.get("recalibrate_images", 0) < 0:
        raise UserError(f"{name('recalibrate_images')} must be >= 0 (0: off), not "
                        f"{recipe['recalibrate_images']}")
    finetune_stages(recipe.get("finetune_epochs", ()), name("finetune_epochs"))
    if not recipe.get("finetune_lr", 1e-3) > 0:
        raise UserError(f"{name('finetune_lr')} must be > 0, not {recipe['finetune_lr']}")
    check_recipe(recipe, prefix)


def finetune_stages(value: Any, what: str = "recipe.finetune_epochs") -> tuple[int, ...]:
    """``finetune_epochs`` as a tuple of stage lengths: an integer N is one stage of N epochs
    (0: none), a list one stage per entry (each >= 1); anything else is a one-line error."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise UserError(f"{what} must be >= 0 (0: no fine-tuning stage), not {value}")
        return (value,) if value else ()
    if isinstance(value, (list, tuple)) and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
        return tuple(value)
    raise UserError(f"{what} must be an epoch count or a list of them (one per fine-tuning "
                    f"stage, each >= 1), not {value!r}")


def load_description(path: str | Path) -> ZooEntry:
    """Read and check a network description file (``.toml``, or ``.json`` with the same keys)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"network description {path} not found; pass a zoo name "
                        f"({', '.join(ZOO)}) or a .toml file")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a valid {'JSON' if path.suffix.lower() == '.json' else 'TOML'}"
                        f" file: {' '.join(str(exc).split())}") from None
    return parse_description(data, str(path), path.stem)


def _load_zoo() -> Mapping[str, ZooEntry]:
    entries = {}
    for path in sorted(NETS_DIR.glob("*.toml")):
        entries[path.stem] = load_description(path)
    return MappingProxyType(entries)


#: The zoo: every ``models/nets/<name>.toml``, by name (alphabetical).
ZOO: Mapping[str, ZooEntry] = _load_zoo()


def resolve(net: str | Path | ZooEntry) -> ZooEntry:
    """A zoo name, a description file path or an entry -> the checked :class:`ZooEntry`."""
    if isinstance(net, ZooEntry):
        return net
    text = str(net)
    if text in ZOO:
        return ZOO[text]
    if Path(text).suffix.lower() in (".toml", ".json") or Path(text).is_file():
        return load_description(text)
    raise UserError(f"unknown zoo model {text!r}; choose one of {', '.join(ZOO)}, "
                    f"or pass a network description file (.toml)")


def names() -> list[str]:
    """Zoo model names (alphabetical: the files in ``models/nets``)."""
    return list(ZOO)


def _get(name: str) -> ZooEntry:
    try:
        return ZOO[name]
    except KeyError:
        raise UserError(f"unknown zoo model {name!r}; choose one of {', '.join(ZOO)}, "
                        f"or pass a network description file (.toml)") from None


def build(name: str) -> BinaryNet | ResNet:
    """A freshly initialised (untrained) model of zoo entry ``name``."""
    return _get(name).build()


def recipe(name: str) -> dict[str, Any]:
    """A mutable copy of the training recipe of ``name``."""
    return dict(_get(name).recipe)


def default_checkpoint(name: str) -> Path:
    """Path of the shipped checkpoint of ``name``: ``models/checkpoints/<name>.pt``."""
    _get(name)
    return CHECKPOINT_DIR / f"{name}.pt"
