"""Build generated designs for simulation with Verilator, cached per design.

A generated design directory (``python -m hw.generate``) holds the Verilog
(``fracbnn_top.v``, ``fracbnn_rom.v``), the Verilator waiver
``verilator_waiver.vlt``, ``design.json`` and the ROM init files ``*.mem``.

Caching
    A build is keyed by the SHA-256 of every ``.v``/``.sv``/``.vlt`` file of the
    design, the build flavour (cocotb model or C++ batch harness), the trace
    format and the Verilator version; it lives in
    ``<build_root>/<flavour>-<key[:16]>`` (``build_root`` defaults to
    ``build/sim`` in the repository, or ``$FRACBNN_SIM_BUILD``).  The ``.mem``
    files are *not* part of the key: the ROMs load them with ``$readmemh``
    when the simulation starts, so a
    retrained network of the same shape reuses the compiled model.  A file lock
    makes concurrent builders of the same key wait for each other, and a build
    counts as done only once its ``build.ok`` stamp exists.

Init files at run time
    ``$readmemh("L0_weights.mem")`` resolves relative to the simulator's
    working directory.  :func:`stage_memories` copies the design's ``.mem``
    files into a run directory, and every simulation here runs there.

Waivers
    Amaranth's Verilog backend emits implicit width extensions/truncations, so
    ``WIDTHEXPAND`` and ``WIDTHTRUNC`` are waived (on the command line and via
    the design's waiver file).  Other warnings (e.g. ``CASEINCOMPLETE`` on
    Amaranth's ``casez`` without ``default``) are lint findings, enforced by
    ``tests/test_hw_lint.py`` with ``--lint-only -Wall``; a simulation build
    only records them in its ``build.log`` (``-Wno-fatal``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sw.errors import UserError

from . import toolchain

__all__ = [
    "REPO_ROOT", "SOURCE_CHECKOUT", "DEFAULT_BUILD_ROOT", "TOPLEVEL", "WAVE_FORMATS", "WAIVER_ARGS", "COCOTB_OPT_FLAGS",
    "COCOTB_BUILD_ARGS",
    "DesignSources", "design_sources", "design_info", "design_key", "check_build_root",
    "build_dir_for", "build_lock",
    "stage_memories", "trace_args", "CocotbBuild", "build_cocotb", "run_cocotb",
]

#: Repository root (the directory holding ``sim/``).
REPO_ROOT = Path(__file__).resolve().parent.parent
#: Where builds are cached unless a caller says otherwise (git-ignored); the
#: environment variable ``FRACBNN_SIM_BUILD`` overrides it.
#: Whether the packages run from a source checkout (``pip install -e`` or the repository
#: itself) rather than an installed copy in site-packages.
SOURCE_CHECKOUT = (REPO_ROOT / "pyproject.toml").is_file()


def _default_build_root() -> Path:
    if os.environ.get("FRACBNN_SIM_BUILD"):
        return Path(os.environ["FRACBNN_SIM_BUILD"])
    if SOURCE_CHECKOUT:
        return REPO_ROOT / "build" / "sim"
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "fracbnn-flow" / "sim"


#: The simulator build cache: ``FRACBNN_SIM_BUILD``, else ``build/sim`` in a source checkout,
#: else ``~/.cache/fracbnn-flow/sim`` (an installed package never writes into site-packages).
DEFAULT_BUILD_ROOT = _default_build_root()
#: Verilog module name of the generated accelerator.
TOPLEVEL = "fracbnn_top"
#: Waveform formats a build can trace, or ``None`` for no tracing.
WAVE_FORMATS = (None, "vcd", "fst")
#: make variables for the cocotb model's C++ compile (see :func:`build_cocotb`).
COCOTB_OPT_FLAGS = "OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0"
#: Warnings waived for Amaranth-generated Verilog (see module docstring).
WAIVER_ARGS = ("-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-fatal")
#: Verilator flags of cocotb builds.  ``-fno-inline`` keeps the module hierarchy, so the
#: testbench can reach ``dut.mvtu0.o__valid`` (the runner's ``--public-flat-rw`` makes
#: signals visible but still lets Verilator inline small modules into their parent).
COCOTB_BUILD_ARGS = (*WAIVER_ARGS, "-O3", "-fno-inline")

_HDL_SUFFIXES = (".v", ".sv")


@dataclass(frozen=True)
class DesignSources:
    """The files of a generated design that a simulator needs.

    Attributes
    ----------
    design_dir
        The directory.
    verilog
        HDL files, top module file first.
    control
        Verilator control (waiver) files.
    memories
        ``$readmemh`` init files, loaded at simulation start.
    """

    design_dir: Path
    verilog: tuple[Path, ...]
    control: tuple[Path, ...]
    memories: tuple[Path, ...]


def design_sources(design_dir: str | Path) -> DesignSources:
    """List the HDL, waiver and init files of ``design_dir``.

    Raises
    ------
    UserError
        If the directory or its ``fracbnn_top.v`` is missing.
    """
    # Absolute: Verilator and make run in the build directory, not in the caller's cwd.
    design_dir = Path(design_dir).resolve()
    if not design_dir.is_dir():
        raise UserError(f"design directory {design_dir} does not exist; "
                        "generate one with `python -m hw.generate EXPORTDIR OUTDIR`")
    top = design_dir / f"{TOPLEVEL}.v"
    if not top.is_file():
        raise UserError(f"{design_dir} has no {top.name}; it is not a generated design, "
                        "regenerate it with `python -m hw.generate EXPORTDIR OUTDIR`")
    hdl = sorted(p for p in design_dir.iterdir() if p.suffix in _HDL_SUFFIXES and p != top)
    control = sorted(design_dir.glob("*.vlt"))
    memories = sorted(design_dir.glob("*.mem"))
    return DesignSources(design_dir, (top, *hdl), tuple(control), tuple(memories))


def design_info(design_dir: str | Path) -> dict:
    """The design's ``design.json`` (written by ``hw.generate``) as a dict.

    Raises
    ------
    UserError
        If it is missing, unreadable, or lacks ``pixels_per_beat``/``classes``.
    """
    path = Path(design_dir) / "design.json"
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} not found; regenerate the design with `python -m hw.generate`") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); regenerate the design") from None
    for key in ("pixels_per_beat", "classes"):
        if not isinstance(info.get(key), int):
            raise UserError(f"{path} has no integer {key!r}; regenerate the design")
    return info


def design_key(sources: DesignSources, flavour: str, waves: str | None = None,
               extra: tuple[str, ...] = ()) -> str:
    """Hex SHA-256 identifying one compiled model (see module docstring)."""
    if waves not in WAVE_FORMATS:
        raise UserError(f"waves must be one of {WAVE_FORMATS}, not {waves!r}")
    h = hashlib.sha256()
    h.update(f"{flavour}\0{waves}\0{toolchain.find_verilator().version}\0".encode())
    if flavour == "cocotb":
        h.update(f"{COCOTB_OPT_FLAGS}\0{COCOTB_BUILD_ARGS}".encode())
    for item in extra:
        h.update(item.encode() + b"\0")
    for path in (*sources.verilog, *sources.control):
        h.update(path.name.encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def check_build_root(build_root: str | Path | None = None) -> Path:
    """The simulator build cache root as an absolute path (default :data:`DEFAULT_BUILD_ROOT`).

    Relative roots are resolved against the current directory here, once: the compilers run
    in the build directory itself.  A root whose path holds a space is refused: Verilator's
    generated makefiles (``make -C <dir>``, object paths) split it into two words.

    Raises
    ------
    UserError
        For a root with whitespace in its path, or one that exists and is not a directory.
    """
    root = Path(build_root if build_root is not None else DEFAULT_BUILD_ROOT).expanduser()
    root = root.resolve()
    if any(c.isspace() for c in str(root)):
        raise UserError(f"the simulator build root {str(root)!r} contains a space, which "
                        "Verilator's makefiles cannot take; choose a --build-root (build_root=, "
                        "$FRACBNN_SIM_BUILD) without spaces")
    if root.exists() and not root.is_dir():
        raise UserError(f"the simulator build root {root} exists and is not a directory; "
                        "choose another --build-root")
    return root


def build_dir_for(key: str, flavour: str, build_root: str | Path | None = None) -> Path:
    """The cache directory of the build with ``key`` (absolute; see :func:`check_build_root`)."""
    return check_build_root(build_root) / f"{flavour}-{key[:16]}"


@contextlib.contextmanager
def build_lock(build_dir: Path):
    """Hold an exclusive lock on ``build_dir`` (a sibling ``.lock`` file)."""
    build_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(build_dir.with_name(build_dir.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def stage_memories(sources: DesignSources, run_dir: str | Path) -> Path:
    """Copy the design's ``.mem`` files into ``run_dir`` (created); return it.

    The simulation must then run with ``run_dir`` as its working directory so
    that the relative ``$readmemh`` paths resolve.
    """
    run_dir = Path(run_dir).resolve()      # the simulator runs there: absolute
    run_dir.mkdir(parents=True, exist_ok=True)
    for mem in sources.memories:
        shutil.copyfile(mem, run_dir / mem.name)
    return run_dir


def _has_header(name: str) -> bool:
    """Whether the C++ compiler finds ``#include <name>``."""
    try:
        proc = subprocess.run(["c++", "-x", "c++", "-E", "-", "-o", "/dev/null"],
                              input=f"#include <{name}>\n", text=True, capture_output=True)
    except OSError:
        return False
    return proc.returncode == 0


def trace_args(waves: str | None) -> list[str]:
    """Verilator flags for tracing ``waves`` (None, "vcd" or "fst").

    Raises
    ------
    UserError
        For FST without the lz4 headers (Verilator's FST writer needs them).
    """
    if waves not in WAVE_FORMATS:
        raise UserError(f"waves must be one of {WAVE_FORMATS}, not {waves!r}")
    if waves == "fst" and not _has_header("lz4.h"):
        raise UserError("FST tracing needs the lz4 headers (install liblz4-dev, e.g. "
                        "`apt-get install liblz4-dev`), or trace VCD instead")
    return {None: [], "vcd": ["--trace"], "fst": ["--trace-fst"]}[waves]


@dataclass(frozen=True)
class CocotbBuild:
    """A Verilator model of a design, built for cocotb.

    Attributes
    ----------
    sources
        The design it was built from.
    build_dir
        The cache directory holding the executable.
    waves
        Trace format compiled in (``None``, ``"vcd"`` or ``"fst"``).
    seconds
        Wall time the build took here (0 when it came from the cache).
    """

    sources: DesignSources
    build_dir: Path
    waves: str | None
    seconds: float

    @property
    def wave_file_name(self) -> str | None:
        """Name of the trace file a traced run writes into its run directory."""
        return None if self.waves is None else f"dump.{self.waves}"


def _runner():
    toolchain.activate()
    from cocotb_tools.runner import get_runner  # imported late: needs PATH set
    return get_runner("verilator")


def build_cocotb(design_dir: str | Path, *, build_root: str | Path | None = None,
                 waves: str | None = None, log_file: str | Path | None = None) -> CocotbBuild:
    """Compile ``design_dir`` into a cocotb-driven Verilator model (cached).

    Parameters
    ----------
    design_dir
        A generated design directory.
    build_root
        Cache root (default :data:`DEFAULT_BUILD_ROOT`).
    waves
        ``None``, ``"vcd"`` or ``"fst"``: compile in waveform tracing.
    log_file
        Where the compiler output goes (default ``<build_dir>/build.log``).

    Raises
    ------
    UserError
        If the design is missing or Verilator rejects it (the log is named).
    """
    sources = design_sources(design_dir)
    targs = trace_args(waves)
    key = design_key(sources, "cocotb", waves)
    build_dir = build_dir_for(key, "cocotb", build_root)
    stamp = build_dir / "build.ok"
    start = time.monotonic()
    with build_lock(build_dir):
        if stamp.exists():
            return CocotbBuild(sources, build_dir, waves, 0.0)
        if build_dir.exists():
            shutil.rmtree(build_dir)  # leftovers of an interrupted build
        build_dir.mkdir(parents=True)
        log = Path(log_file) if log_file is not None else build_dir / "build.log"
        runner = _runner()
        build_args = list(COCOTB_BUILD_ARGS) + targs
        saved = os.environ.get("MAKEFLAGS")
        # The runner passes os.environ to make: compile the model without C++
        # optimisation (COCOTB_OPT_FLAGS), which is minutes faster to build for
        # LFC-sized designs, while a cocotb run is bound by Python, not the model.
        os.environ["MAKEFLAGS"] = f"{saved or ''} {COCOTB_OPT_FLAGS}".strip()
        from sw.progress import heartbeat
        try:
            # The runner adds --trace itself when waves is set; FST needs its flag too.
            with heartbeat(f"building the cocotb simulator (Verilator, log {log})"):
                runner.build(sources=[*sources.verilog, *sources.control], hdl_toplevel=TOPLEVEL,
                             build_dir=build_dir, build_args=build_args,
                             waves=waves is not None, log_file=log)
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            tail = _tail(log)
            raise UserError(f"Verilator could not build {sources.design_dir} ({exc}); "
                            f"see {log}: {tail}") from None
        finally:
            if saved is None:
                os.environ.pop("MAKEFLAGS", None)
            else:
                os.environ["MAKEFLAGS"] = saved
        stamp.write_text(key + "\n")
    return CocotbBuild(sources, build_dir, waves, time.monotonic() - start)


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def run_cocotb(build: CocotbBuild, run_dir: str | Path, *, test_module: str = "sim.tb_accelerator",
               testcase: str | list[str] | None = None, seed: int = 1,
               extra_env: dict[str, str] | None = None) -> tuple[int, int, Path]:
    """Run cocotb tests against a built model inside ``run_dir``.

    The design's ``.mem`` files are staged into ``run_dir`` first.  The
    simulator's output goes to ``run_dir/sim.log``; a traced build writes
    ``run_dir/dump.vcd`` or ``dump.fst``.

    Returns
    -------
    (tests, failed, results_xml)
        Counts from cocotb's xUnit results file and its path.

    Raises
    ------
    RuntimeError
        If the simulator died without writing results.
    """
    run_dir = stage_memories(build.sources, run_dir)
    # cocotb's runner exports sys.path as PYTHONPATH: the testbench imports sim.*.
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from cocotb_tools.runner import get_results
    runner = _runner()
    results_xml = (run_dir / "results.xml").resolve()
    log = run_dir / "sim.log"
    try:
        runner.test(test_module=test_module, hdl_toplevel=TOPLEVEL, hdl_toplevel_lang="verilog",
                    build_dir=build.build_dir,
                    test_dir=run_dir, testcase=testcase, seed=seed, waves=build.waves is not None,
                    extra_env=dict(extra_env or {}), results_xml=str(results_xml), log_file=log)
    except SystemExit:
        # Under pytest the runner exits on failing tests; the results file says which.
        pass
    try:
        tests, failed = get_results(results_xml)
    except RuntimeError:
        raise RuntimeError(f"the simulation wrote no results; see {log}: {_tail(log, 8)}") from None
    return tests, failed, results_xml
