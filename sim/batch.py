"""Fast batch simulation: the C++ harness ``sim/harness/batch_main.cpp``.

The harness is compiled together with the Verilated design once per design
(cached like :mod:`sim.build`: the key covers the HDL, the harness source,
pixels per beat and class count, not the ``.mem`` files).  It streams a binary
file of images through ``s_axis`` at full rate (tvalid high whenever a beat
is left; optional seeded random idle cycles), keeps ``m_axis_tready`` high
(optional seeded random backpressure), and writes every image's class,
scores and cycle stamps (first/last input beat accepted, first/last output
beat) plus a few register read-backs.  Cycle k is the k-th rising edge after
reset; see the harness header for the exact file formats.

With ``taps`` (flattened wire names, :func:`sim.taps.tap_wires`) the build makes those
wires public (a Verilator configuration file, nothing else of the design changes) and
:func:`run_batch` records every transfer of the tapped streams (:mod:`sim.taps` decodes
and compares them).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sw.errors import UserError

from . import build as simbuild
from . import toolchain

__all__ = ["HARNESS_SOURCE", "BatchBuild", "BatchResult", "build_batch", "run_batch",
           "write_images", "read_results", "verilator_bytes"]

#: The C++ harness source.
HARNESS_SOURCE = Path(__file__).resolve().parent / "harness" / "batch_main.cpp"
_EXE = "batch_sim"


@dataclass(frozen=True)
class BatchBuild:
    """A compiled batch simulator.

    Attributes
    ----------
    sources
        The design it simulates.
    exe
        The executable.
    pixels_per_beat, classes
        Compiled-in stream geometry.
    waves
        Trace format compiled in, or ``None``.
    taps
        The wires made public for layer taps (empty: none).
    seconds
        Build wall time (0 when cached).
    """

    sources: simbuild.DesignSources
    exe: Path
    pixels_per_beat: int
    classes: int
    waves: str | None
    seconds: float
    taps: tuple[str, ...] = ()


@dataclass
class BatchResult:
    """Everything one batch run measured.

    Attributes
    ----------
    classes, scores
        int64 (N,) and (N, C) outputs of the design.
    first_in, last_in, first_out, last_out
        int64 (N,) cycle of each image's first/last accepted input beat and
        first/last output beat (cycle k = k-th rising edge after reset).
    total_cycles
        Cycles simulated until the last output beat.
    framing_errors
        Output frames whose TLAST was not on their last beat.
    reg_status, reg_images_done, reg_id, reg_cycles
        STATUS, IMAGES_DONE, ID and CYCLES read over AXI-Lite after the run.
    reg_exit_taken
        The EXITj_TAKEN registers read after the run (one per early exit, as many as
        EXITS says; empty without exits).
    wall_seconds
        Wall time of the simulation process.
    tap_beats
        Per requested tap the recorded payloads, uint8 ``(beats, bytes)`` (Verilator's
        little-endian storage); empty without taps.
    """

    classes: np.ndarray
    scores: np.ndarray
    first_in: np.ndarray
    last_in: np.ndarray
    first_out: np.ndarray
    last_out: np.ndarray
    total_cycles: int
    framing_errors: int
    reg_status: int
    reg_images_done: int
    reg_id: int
    reg_cycles: int
    wall_seconds: float
    reg_exit_taken: list[int] = field(default_factory=list)
    tap_beats: list = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return len(self.classes) / self.wall_seconds if self.wall_seconds else float("inf")

    @property
    def cycles_per_second(self) -> float:
        return self.total_cycles / self.wall_seconds if self.wall_seconds else float("inf")


def build_batch(design_dir: str | Path, *, pixels_per_beat: int | None = None,
                classes: int | None = None, build_root: str | Path | None = None,
                waves: str | None = None, jobs: int = 2, taps=()) -> BatchBuild:
    """Compile the harness with the Verilated design (cached per design).

    Parameters
    ----------
    design_dir
        Generated design directory.
    pixels_per_beat, classes
        The design's input beat size and class count (default: from ``design.json``).
    build_root
        Cache root (default :data:`sim.build.DEFAULT_BUILD_ROOT`).
    waves
        ``None``, ``"vcd"`` or ``"fst"``: compile in tracing (``--trace FILE`` at run time).
    jobs
        Parallel compile jobs (keep <= 2 on a shared 2-core machine).
    taps
        Flattened wire names (``"mvtu0.o__valid"``) to make public for layer taps
        (:func:`sim.taps.tap_wires`); a build per set of taps.

    Raises
    ------
    UserError
        If Verilator or the C++ compiler fails (the log is named).
    """
    if pixels_per_beat is None or classes is None:
        info = simbuild.design_info(design_dir)
        pixels_per_beat = info["pixels_per_beat"] if pixels_per_beat is None else pixels_per_beat
        classes = info["classes"] if classes is None else classes
    if pixels_per_beat < 1 or classes < 1:
        raise UserError(f"pixels_per_beat and classes must be >= 1, not {pixels_per_beat}, {classes}")
    sources = simbuild.design_sources(design_dir)
    trace = simbuild.trace_args(waves)
    taps = tuple(taps)
    key = simbuild.design_key(sources, "batch", waves,
                              extra=(HARNESS_SOURCE.read_text(), str(pixels_per_beat), str(classes),
                                     *taps))
    build_dir = simbuild.build_dir_for(key, "batch", build_root)
    exe = build_dir / _EXE
    stamp = build_dir / "build.ok"
    start = time.monotonic()
    with simbuild.build_lock(build_dir):
        if stamp.exists() and exe.exists():
            return BatchBuild(sources, exe, pixels_per_beat, classes, waves, 0.0, taps)
        if build_dir.exists():
            shutil.rmtree(build_dir)
        build_dir.mkdir(parents=True)
        tap_args = []
        if taps:
            vlt = build_dir / "taps.vlt"
            vlt.write_text("`verilator_config\n" + "".join(
                f'public_flat_rd -module "{simbuild.TOPLEVEL}" -var "{w}"\n' for w in taps))
            tap_args = [str(vlt)]
        tool = toolchain.find_verilator()
        cmd = [str(tool.executable), "--cc", "--exe", "--build", "-j", str(jobs),
               "--top-module", simbuild.TOPLEVEL, "-Mdir", str(build_dir), "-o", _EXE,
               "-O3", "--x-assign", "fast", "--x-initial", "fast", *simbuild.WAIVER_ARGS, *trace,
               "-CFLAGS", f"-DFRACBNN_PPB={pixels_per_beat} -DFRACBNN_CLASSES={classes}"
                          f" -DFRACBNN_TAPS={int(bool(taps))}", *tap_args,
               "-MAKEFLAGS", "OPT_FAST=-O2 OPT_SLOW=-O1 OPT_GLOBAL=-O2",
               str(HARNESS_SOURCE), *map(str, sources.verilog), *map(str, sources.control)]
        log = build_dir / "build.log"
        from sw.progress import heartbeat
        with open(log, "w") as out, heartbeat(f"building the batch simulator (Verilator, log {log})"):
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT,
                                  env=toolchain.verilator_env(), cwd=build_dir)
        if proc.returncode != 0 or not exe.exists():
            text = log.read_text(errors="replace").strip().splitlines()
            errors = [line for line in text if "error" in line.lower()][:3] or text[-3:]
            raise UserError(f"building the batch simulator for {sources.design_dir} failed; "
                            f"see {log}: {' | '.join(errors)}")
        stamp.write_text(key + "\n")
    return BatchBuild(sources, exe, pixels_per_beat, classes, waves, time.monotonic() - start,
                      taps)


def write_images(path: str | Path, images: np.ndarray) -> None:
    """Write uint8 images (N, P) in the harness's FBNNIMG1 format."""
    images = np.ascontiguousarray(images, dtype=np.uint8)
    if images.ndim != 2:
        raise ValueError(f"images must be (N, P), not shape {images.shape}")
    with open(path, "wb") as f:
        f.write(b"FBNNIMG1")
        f.write(np.array(images.shape, dtype="<u4").tobytes())
        f.write(images.tobytes())


def read_results(path: str | Path, count: int, classes: int, wall_seconds: float = 0.0) -> BatchResult:
    """Parse the harness's FBNNRES1 results file."""
    raw = Path(path).read_bytes()
    if raw[:8] != b"FBNNRES1":
        raise RuntimeError(f"{path} is not a batch results file")
    n, c = np.frombuffer(raw, dtype="<u4", count=2, offset=8)
    if (n, c) != (count, classes):
        raise RuntimeError(f"{path} holds {n} images x {c} classes, expected {count} x {classes}")
    rec = np.dtype([("cls", "<i4"), ("scores", "<i4", (classes,)), ("first_in", "<u8"),
                    ("last_in", "<u8"), ("first_out", "<u8"), ("last_out", "<u8")])
    body = np.frombuffer(raw, dtype=rec, count=count, offset=16)
    tail_type = np.dtype([("total", "<u8"), ("framing", "<u4"), ("status", "<u4"),
                          ("done", "<u4"), ("id", "<u4"), ("cycles", "<u8"), ("exits", "<u4")])
    at = 16 + count * rec.itemsize
    tail = np.frombuffer(raw, dtype=tail_type, count=1, offset=at)[0]
    taken = np.frombuffer(raw, dtype="<u4", count=int(tail["exits"]),
                          offset=at + tail_type.itemsize)
    as64 = lambda a: np.asarray(a, dtype=np.int64)  # noqa: E731
    return BatchResult(as64(body["cls"]), as64(body["scores"]), as64(body["first_in"]),
                       as64(body["last_in"]), as64(body["first_out"]), as64(body["last_out"]),
                       int(tail["total"]), int(tail["framing"]), int(tail["status"]),
                       int(tail["done"]), int(tail["id"]), int(tail["cycles"]), wall_seconds,
                       [int(t) for t in taken])


def run_batch(build: BatchBuild, images: np.ndarray, *, stall_percent: int = 0,
              idle_percent: int = 0, seed: int = 1, trace: str | Path | None = None,
              run_dir: str | Path | None = None, progress=None,
              axil_writes=None, taps=None) -> BatchResult:
    """Simulate ``images`` (uint8, (N, P)) back to back; return outputs and cycles.

    Parameters
    ----------
    build
        From :func:`build_batch`.
    images
        Pixels, P a multiple of the design's pixels per beat.
    stall_percent, idle_percent, seed
        Seeded random output backpressure / input idle cycles (0 = none).
    trace
        Waveform file to write (needs a traced build).
    run_dir
        Working directory (the ``.mem`` files are staged there); default a
        temporary directory removed afterwards.
    progress
        Optional callable ``progress(images_done)``, called as results arrive.
    axil_writes
        ``(address, value)`` AXI4-Lite writes made after reset, before the first image
        (e.g. :func:`sw.runtime.parameter_writes` for a design with writable parameters);
        the cycle stamps count from reset, so they include them.
    taps
        Streams to record: ``(valid, payload, ready, max_beats, payload_bits)``: wire names
        (public in ``build``: :func:`sim.taps.tap_wires`), the number of beats to keep and
        the payload's width; the payloads come back in :attr:`BatchResult.tap_beats`.

    Raises
    ------
    RuntimeError
        If the simulator fails or the design stops producing results.
    """
    images = np.ascontiguousarray(images, dtype=np.uint8)
    if images.ndim != 2 or images.shape[1] % build.pixels_per_beat:
        raise UserError(f"images of shape {images.shape} do not split into "
                        f"{build.pixels_per_beat}-pixel beats")
    if trace is not None and build.waves is None:
        raise UserError("tracing needs a batch build with waves='vcd' or 'fst'")
    with tempfile.TemporaryDirectory(prefix="fracbnn-batch-") as tmp:
        work = Path(run_dir) if run_dir is not None else Path(tmp)
        simbuild.stage_memories(build.sources, work)
        write_images(work / "images.bin", images)
        cmd = [str(build.exe), "images.bin", "results.bin", "--stall", str(stall_percent),
               "--idle", str(idle_percent), "--seed", str(seed)]
        if trace is not None:
            cmd += ["--trace", str(Path(trace).resolve())]
        if axil_writes:
            pairs = np.asarray(axil_writes, dtype=np.uint32).reshape(-1, 2)
            with open(work / "axil_writes.bin", "wb") as f:
                f.write(b"FBNNAXW1")
                f.write(np.uint32(len(pairs)).tobytes())
                f.write(pairs.astype("<u4").tobytes())
            cmd += ["--axil-writes", "axil_writes.bin"]
        if taps:
            missing = sorted({w for t in taps for w in t[:3]} - set(build.taps))
            if missing:
                raise UserError(f"taps {', '.join(missing)} are not public in this batch build; "
                                f"build it with taps= naming them")
            with open(work / "taps.txt", "w") as f:
                for k, (valid, payload, ready, max_beats, _bits) in enumerate(taps):
                    f.write(f"{valid}\t{payload}\t{ready}\t{int(max_beats)}\ttap{k}.bin\n")
            cmd += ["--taps", "taps.txt"]
        start = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        for line in proc.stdout:
            if progress is not None and line.startswith("done "):
                progress(int(line.split()[1]))
        stderr = proc.stderr.read()
        proc.wait()
        wall = time.monotonic() - start
        if proc.returncode != 0:
            raise RuntimeError(f"batch simulation failed (exit {proc.returncode}): {stderr.strip()}")
        result = read_results(work / "results.bin", len(images), build.classes, wall)
        for k in range(len(taps or ())):
            raw = np.fromfile(work / f"tap{k}.bin", dtype=np.uint8)
            result.tap_beats.append(raw.reshape(-1, verilator_bytes(int(taps[k][4]))))
        return result


def verilator_bytes(bits: int) -> int:
    """Bytes Verilator stores a ``bits``-wide wire in: 1, 2, 4 or 8, or 32-bit words."""
    if bits <= 8:
        return 1
    if bits <= 16:
        return 2
    if bits <= 32:
        return 4
    if bits <= 64:
        return 8
    return 4 * -(-bits // 32)
