"""$readmemh / .coe memory files (sw/memfile.py)."""

import pytest
from hypothesis import given, settings, strategies as st

from sw.errors import UserError
from sw.memfile import hex_digits, read_coe, read_mem, write_coe, write_mem


def test_exact_text(tmp_path):
    write_mem(tmp_path / "a.mem", [0, 0x7FF, 0x400], 11)
    assert (tmp_path / "a.mem").read_text() == "000\n7ff\n400\n"
    write_coe(tmp_path / "a.coe", [1, 2], 8)
    assert (tmp_path / "a.coe").read_text() == (
        "memory_initialization_radix=16;\nmemory_initialization_vector=\n01,\n02;\n")
    assert [hex_digits(w) for w in (1, 4, 5, 11, 2048)] == [1, 1, 2, 3, 512]


@settings(max_examples=50, deadline=None)
@given(width=st.integers(1, 2100), depth=st.integers(0, 12), data=st.data())
def test_round_trip(tmp_path_factory, width, depth, data):
    words = data.draw(st.lists(st.integers(0, (1 << width) - 1), min_size=depth, max_size=depth))
    d = tmp_path_factory.mktemp("mem")
    write_mem(d / "x.mem", words, width)
    write_coe(d / "x.coe", words, width)
    assert read_mem(d / "x.mem", width, depth) == words
    assert read_coe(d / "x.coe", width, depth) == words
    lines = (d / "x.mem").read_text().splitlines()
    assert len(lines) == depth and all(len(l) == -(-width // 4) for l in lines)


def test_write_rejects_overwide_and_negative(tmp_path):
    with pytest.raises(ValueError, match="does not fit"):
        write_mem(tmp_path / "a.mem", [0x800], 11)
    with pytest.raises(ValueError):
        write_mem(tmp_path / "a.mem", [-1], 11)
    assert not (tmp_path / "a.mem").exists()


@pytest.mark.parametrize("text,width,depth,match", [
    ("000\n0g0\n", 11, 2, "bad hex digit 'g'"),
    ("000\n", 11, 2, "has 1 words, expected depth 2"),
    ("000\n000\n000\n", 11, 2, "has 3 words"),
    ("fff\n000\n", 11, 2, "wider than 11 bits"),
    ("0000\n000\n", 11, 2, "4 hex digits, expected 3"),
    ("@0\n000\n", 11, 2, "hex digits"),
])
def test_read_errors(tmp_path, text, width, depth, match):
    p = tmp_path / "bad.mem"
    p.write_text(text)
    with pytest.raises(UserError, match=match):
        read_mem(p, width, depth)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_mem(tmp_path / "nope.mem", 8, 1)
