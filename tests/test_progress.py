"""sw.progress: a heartbeat instead of carriage-return bars when stderr is not a terminal."""

from __future__ import annotations

import subprocess
import sys
import time

from sw import progress


def test_heartbeat_lines_not_carriage_returns(monkeypatch, capsys):
    monkeypatch.setenv("FRACBNN_HEARTBEAT", "0.05")
    bar = progress.progress_bar(range(6), desc="simulating", unit="img")
    for _ in bar:
        time.sleep(0.03)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.strip().splitlines()
    assert lines and all(l.startswith("simulating: ") and "elapsed" in l for l in lines)
    assert lines[-1].startswith("simulating: 6/6 img (100 %)")


def test_short_phases_stay_silent(monkeypatch, capsys):
    monkeypatch.setenv("FRACBNN_HEARTBEAT", "30")
    with progress.progress_bar(total=3, desc="generate", unit="step") as bar:
        bar.set_postfix_str("memories")
        bar.update(3)
    assert capsys.readouterr().err == ""


def test_heartbeat_context_reports_a_long_silent_phase(monkeypatch, capsys):
    monkeypatch.setenv("FRACBNN_HEARTBEAT", "0.05")
    with progress.heartbeat("yosys"):
        time.sleep(0.18)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) >= 2 and all(l.startswith("yosys: still running, ") for l in lines)
    with progress.heartbeat("off", enabled=False):
        time.sleep(0.08)
    assert capsys.readouterr().err == ""


def test_format_elapsed():
    assert progress.format_elapsed(42) == "42 s"
    assert progress.format_elapsed(185) == "3 min 05 s"
    assert progress.format_elapsed(3720) == "1 h 02 min"


def test_training_log_in_a_pipe_has_no_carriage_returns(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "models.train", "--net", "tiny", "--epochs", "1",
                           "--limit", "2000", "--threads", "1", "--out", str(tmp_path / "t.pt")],
                          capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "FRACBNN_HEARTBEAT": "0.01"})
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and "tiny epoch 1/1: " in proc.stderr
    assert "elapsed" in proc.stderr
