"""Run the cocotb testbench (:mod:`sim.tb_accelerator`) on a generated design.

The caller supplies the images and the exact expected results (from the
golden model) and, optionally, the cycle model's per-image predictions; this
module builds the design (cached, :mod:`sim.build`), writes the testbench's
configuration and arrays into a run directory, runs the cocotb tests there and
returns their findings.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import build as simbuild
from .reference import layer_taps

__all__ = ["TestbenchSpec", "TestbenchResult", "ALL_TESTS", "EXTRA_TESTS", "run_testbench"]

#: cocotb tests in sim.tb_accelerator, in the order they run.
ALL_TESTS = ("test_registers", "test_images", "test_cycles", "test_reset_mid_image",
             "test_framing_error")
#: Tests run only when asked for (they need more of the spec).
EXTRA_TESTS = ("test_load_parameters",)


@dataclass
class TestbenchSpec:
    """What the testbench sends and expects.

    Attributes
    ----------
    images
        uint8 (N, P) pixels.
    classes, scores
        Expected int64 (N,) classes and (N, C) scores.
    pixels_per_beat
        Pixels per input beat of the design.
    registers
        Expected read-only register values ``{address: value}``.
    pred_accept, pred_output
        Predicted cycle of each image's first accepted input beat and first
        output beat at full rate (any common origin), or ``None`` to skip the
        comparison.
    idle_prob, stall_prob, seed
        Random input idle cycles / output backpressure for ``test_images``.
    layer_outputs
        Per layer the outputs its engine must produce, in order (the golden model's, of
        the images the engine sees: :func:`sim.reference.layer_outputs_seen`); when
        given, every layer engine's output stream is tapped and compared too.
    exit_counts
        Networks with early exits: per exit the images whose result leaves through it
        (:func:`sim.reference.exit_counts`); ``test_images`` then checks the EXITj_TAKEN
        registers after the run and after a CTRL clear.
    param_writes, load_classes, load_scores
        ``test_load_parameters``: the register writes ``(offset, value)`` that load
        another network (:func:`sw.runtime.parameter_writes`) and its expected results.
    """

    __test__ = False  # not a pytest test class despite the name

    images: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
    pixels_per_beat: int
    registers: dict[int, int] = field(default_factory=dict)
    pred_accept: np.ndarray | None = None
    pred_output: np.ndarray | None = None
    idle_prob: float = 0.3
    stall_prob: float = 0.3
    seed: int = 1
    layer_outputs: list[np.ndarray] | None = None
    exit_counts: list[int] | None = None
    param_writes: list[tuple[int, int]] | None = None
    load_classes: np.ndarray | None = None
    load_scores: np.ndarray | None = None

    def __post_init__(self):
        self.images = np.asarray(self.images, dtype=np.uint8)
        self.classes = np.asarray(self.classes, dtype=np.int64)
        self.scores = np.asarray(self.scores, dtype=np.int64)
        n, p = self.images.shape
        if self.classes.shape != (n,) or self.scores.ndim != 2 or self.scores.shape[0] != n:
            raise ValueError(f"expected results do not match {n} images: classes "
                             f"{self.classes.shape}, scores {self.scores.shape}")
        if p % self.pixels_per_beat:
            raise ValueError(f"{p} pixels are not a whole number of {self.pixels_per_beat}-pixel beats")
        for name in ("idle_prob", "stall_prob"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:     # also false for NaN
                raise ValueError(f"{name} must be a probability in [0, 1), not {value!r}")


@dataclass
class TestbenchResult:
    """Outcome of one testbench run.

    Attributes
    ----------
    tests, failed
        Number of cocotb tests run and failed.
    report
        Per-test findings written by the testbench (mismatches, measured cycles).
    run_dir
        Where it ran (``sim.log``, ``results.xml``, waveforms).
    build_seconds, sim_seconds
        Wall time of the (possibly cached) build and of the simulation.
    """

    __test__ = False

    tests: int
    failed: int
    report: dict
    run_dir: Path
    build_seconds: float
    sim_seconds: float

    @property
    def ok(self) -> bool:
        return self.tests > 0 and self.failed == 0

    def failure_summary(self) -> str:
        """One line per failed test with its first reported problem."""
        lines = []
        for test, facts in self.report.items():
            problems = facts.get("errors") or []
            if facts.get("mismatch_count"):
                m = facts["mismatches"][0]
                problems = [f"{facts['mismatch_count']} mismatches, first {m}"] + list(problems)
            if problems:
                lines.append(f"{test}: {'; '.join(map(str, problems))}")
        log = self.run_dir / "sim.log"
        if self.failed or not self.tests:
            lines.append(f"see {log}")
        return "\n".join(lines)


def run_testbench(design_dir: str | Path, spec: TestbenchSpec, *,
                  tests: tuple[str, ...] | list[str] = ALL_TESTS, waves: str | None = None,
                  build_root: str | Path | None = None, run_dir: str | Path | None = None,
                  timeout_cycles: int | None = None) -> TestbenchResult:
    """Build ``design_dir`` (cached) and run the chosen cocotb tests on it.

    Parameters
    ----------
    design_dir
        Generated design directory.
    spec
        Stimulus and expectations.
    tests
        Names from :data:`ALL_TESTS`.
    waves
        ``None``, ``"vcd"`` or ``"fst"`` (a separate cached build).
    build_root
        Build cache root.
    run_dir
        Run directory (default: a new temporary directory, kept for inspection).
    timeout_cycles
        Cycle budget per result frame (default from the image count).
    """
    unknown = sorted(set(tests) - set(ALL_TESTS) - set(EXTRA_TESTS))
    if unknown:
        raise ValueError(f"unknown testbench tests {unknown}; choose from "
                         f"{ALL_TESTS + EXTRA_TESTS}")
    # Absolute paths: the simulator runs in the run directory, the compiler in the build one.
    design_dir = Path(design_dir).resolve()
    t0 = time.monotonic()
    built = simbuild.build_cocotb(design_dir, build_root=build_root, waves=waves)
    build_seconds = time.monotonic() - t0
    run_dir = (Path(run_dir).resolve() if run_dir is not None
               else Path(tempfile.mkdtemp(prefix="fracbnn-tb-")))
    run_dir.mkdir(parents=True, exist_ok=True)
    arrays = {"images": spec.images, "classes": spec.classes, "scores": spec.scores}
    if spec.pred_accept is not None:
        arrays["pred_accept"] = np.asarray(spec.pred_accept, dtype=np.int64)
        arrays["pred_output"] = np.asarray(spec.pred_output, dtype=np.int64)
    taps = []
    if spec.layer_outputs is not None:
        for i, out in enumerate(spec.layer_outputs):
            arrays[f"layer{i}"] = np.asarray(out, dtype=np.int64)
        taps = layer_taps(simbuild.design_info(design_dir))
    if spec.param_writes is not None:
        arrays["load_classes"] = np.asarray(spec.load_classes, dtype=np.int64)
        arrays["load_scores"] = np.asarray(spec.load_scores, dtype=np.int64)
    np.savez(run_dir / "tb_arrays.npz", **arrays)
    report = run_dir / "tb_report.json"
    report.unlink(missing_ok=True)
    n, p = spec.images.shape
    cfg = {
        "arrays": str((run_dir / "tb_arrays.npz").resolve()),
        "pixels_per_beat": spec.pixels_per_beat, "pixels": p, "classes": spec.scores.shape[1],
        "seed": spec.seed, "idle_prob": spec.idle_prob, "stall_prob": spec.stall_prob,
        "registers": {f"0x{a:02X}": int(v) for a, v in spec.registers.items()},
        "report": str(report.resolve()),
        "waves": str((run_dir / built.wave_file_name).resolve()) if built.wave_file_name else None,
        "timeout_cycles": int(timeout_cycles or 100_000 + 2000 * n),
        "taps": taps,
        "exit_counts": (None if spec.exit_counts is None
                        else [int(c) for c in spec.exit_counts]),
        "param_writes": ([[int(o), int(v)] for o, v in spec.param_writes]
                         if spec.param_writes is not None else None),
    }
    cfg_path = run_dir / "tb_config.json"
    cfg_path.write_text(json.dumps(cfg, indent=1, allow_nan=False))
    t1 = time.monotonic()
    ran, failed, _ = simbuild.run_cocotb(
        built, run_dir, testcase=list(tests), seed=spec.seed,
        extra_env={"FRACBNN_TB_CONFIG": str(cfg_path.resolve())})
    sim_seconds = time.monotonic() - t1
    findings = json.loads(report.read_text()) if report.exists() else {}
    return TestbenchResult(ran, failed, findings, run_dir, build_seconds, sim_seconds)
