"""Write tests/board/data: compiled networks and their golden results, made with numpy 2.x.

``python -m tests.board.make_fixtures`` (whole-flow environment: PyTorch for the export).
The board session (numpy 1.26) must reproduce every class and score exactly
(tests/board/test_light_install.py); the main suite checks that they are still what the
current golden model computes, so a change of the format or the model shows up there first.

* ``tiny_conv_frac``: the shipped checkpoint exported (two binary convolutions with 2x2
  max-pool, FracBNN 2-bit gated activations, thermometer input, 28x28);
* ``dense_keys``: a random dense network: thermometer T=3, frac2 -> multithreshold (3
  levels) -> sign -> scores, an argmax over per-class keys;
* ``dense_hsb``: a random dense network whose last layer is a sign layer read by the
  highest-set-bit decoder;
* ``resnet_frac2``: a residual (version 4) network: the tests' tiny 8x8 ResNet (widths 4/8,
  gated frac2 blocks, fixed-point shortcut path) after a few Adam steps, written with the
  hardware's folding (one PE, as ``hw.build`` leaves ``net/``) and two test vectors.

Each directory holds the network and ``expected.npz`` (``images`` uint8, ``classes``,
``scores`` int64) for :data:`IMAGES` random images.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["DATA", "IMAGES", "NETWORKS", "expected_results", "main"]

DATA = Path(__file__).parent / "data"
IMAGES = 64
NETWORKS = ("tiny_conv_frac", "dense_keys", "dense_hsb", "resnet_frac2")
_ROOT = Path(__file__).resolve().parents[2]


def expected_results(net_dir: Path, images: np.ndarray) -> dict:
    """The golden model's classes and scores of ``images`` on the network in ``net_dir``."""
    from sw.golden import GoldenModel
    from sw.network_io import load_network
    result = GoldenModel(load_network(net_dir)).run(images, taps=False)
    return {"images": images, "classes": result.classes.astype(np.int64),
            "scores": result.scores.astype(np.int64)}


def _write(name: str, tmp: Path) -> None:
    sys.path.insert(0, str(_ROOT / "tests"))
    from netfactory import random_compiled_network

    out = tmp / name
    if name == "tiny_conv_frac":
        from models.export import export
        export(_ROOT / "models" / "checkpoints" / "tiny_conv_frac.pt", out, progress=False,
               vectors=4)
        doc = out / "network.json"       # the checkpoint relative to the repository
        doc.write_text(doc.read_text().replace(f'"{_ROOT}/', '"'))
    elif name == "dense_keys":
        random_compiled_network(out, image=(1, 4, 8), levels=3, shape=(24, 16, 12, 5),
                                outs=["frac2", "mt3", "sign"], folding=[(4, 8), (2, 8), (4, 4),
                                                                        (5, 4)],
                                class_scale=[2, -1, 3, 1, 1], class_bias=[0, 4, -2, 0, 1],
                                seed=11, name="dense_keys")
    elif name == "resnet_frac2":
        _write_resnet(out)
    else:
        random_compiled_network(out, image=(1, 4, 4), shape=(12, 6), outs=["sign"],
                                last="sign", decoder="highest_set_bit",
                                folding=[(2, 4), (3, 4)], seed=12, name="dense_hsb")
    for coe in out.glob("*.coe"):
        coe.unlink()                     # Vivado's copy of the .mem files: not read here
    from sw.network_io import load_network
    pixels = load_network(out).input.pixels
    rng = np.random.default_rng(2024)
    images = rng.integers(0, 256, size=(IMAGES, pixels), dtype=np.uint8)
    np.savez_compressed(out / "expected.npz", **expected_results(out, images))
    shutil.rmtree(DATA / name, ignore_errors=True)
    shutil.copytree(out, DATA / name)


def _write_resnet(out: Path) -> None:
    """The tiny frac2 ResNet, refolded to one PE as ``hw.build`` writes ``net/``."""
    import torch

    from hw.residual_accelerator import resolve_folding
    from models import residual as rs
    from models.export_residual import export_resnet
    from modelfactory import resnet_images, train_resnet_briefly
    from sw.network_io import load_network
    from sw.residual_io import load_residual_vectors, write_residual_network

    torch.manual_seed(0)
    model = rs.ResNet(input_shape=(1, 8, 8), thermometer_levels=2, widths=(4, 8), blocks=1,
                      activation="frac2", classes=4, pool_shift=2)
    model = train_resnet_briefly(model, resnet_images(model, 64, 0), 4, split=32)
    export_resnet(model, out, resnet_images(model, 8, seed=9), name="resnet_frac2", vectors=2)
    net = load_network(out)
    vectors = load_residual_vectors(out, net)
    hardware, note = resolve_folding(net)
    if note is not None:
        write_residual_network(hardware, out, vectors)


def main() -> int:
    DATA.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in NETWORKS:
            _write(name, Path(tmp))
            print(f"wrote {DATA / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
