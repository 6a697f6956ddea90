"""``$readmemh`` memory files and their Xilinx ``.coe`` twins.

Format (docs/compiled-network.md, "Memory files"): one word per line, exactly
``hex_digits(width) = ceil(width / 4)`` hexadecimal digits, most significant digit first,
no address markers or comments, exactly ``depth`` lines.  Bit 0 of a word is its least
significant bit.  Words are Python ints (arbitrary width, e.g. 2048-bit weight words).

Readers check everything (digit count, digit characters, value fitting ``width`` bits,
line count) and raise :class:`sw.errors.UserError` with a one-line message naming the
file, the line and the fix.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from .errors import UserError

__all__ = ["hex_digits", "format_words", "write_mem", "read_mem", "write_coe", "read_coe"]

_HEX = frozenset("0123456789abcdefABCDEF")


def hex_digits(width: int) -> int:
    """Hex digits per word of ``width`` bits (``ceil(width / 4)``)."""
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise ValueError(f"width must be a positive int, not {width!r}")
    return -(-width // 4)


def format_words(words: Iterable[int], width: int) -> list[str]:
    """Format words as fixed-width lower-case hex strings, checking ``0 <= w < 2**width``."""
    digits = hex_digits(width)
    limit = 1 << width
    lines = []
    for addr, word in enumerate(words):
        if not isinstance(word, int) or isinstance(word, bool):
            raise ValueError(f"word {addr} must be an int, not {type(word).__name__}")
        if not 0 <= word < limit:
            raise ValueError(f"word {addr} = {word:#x} does not fit {width} unsigned bits")
        lines.append(format(word, f"0{digits}x"))
    return lines


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="ascii", newline="\n") as fh:
        fh.write(text)


def write_mem(path: str | Path, words: Sequence[int], width: int) -> None:
    """Write ``words`` (each ``0 <= w < 2**width``) as a ``$readmemh`` file, one word a line."""
    lines = format_words(words, width)
    _write_text(Path(path), "".join(line + "\n" for line in lines))


def _parse_words(path: Path, lines: list[str], width: int, depth: int | None) -> list[int]:
    digits = hex_digits(width)
    if depth is not None and len(lines) != depth:
        raise UserError(f"memory file {path} has {len(lines)} words, expected depth {depth}; "
                        "re-export the network")
    limit = 1 << width
    words = []
    for lineno, line in enumerate(lines, start=1):
        if len(line) != digits:
            raise UserError(f"memory file {path} line {lineno}: {len(line)} hex digits, expected "
                            f"{digits} for width {width}; re-export the network")
        if not _HEX.issuperset(line):
            bad = next(ch for ch in line if ch not in _HEX)
            raise UserError(f"memory file {path} line {lineno}: bad hex digit {bad!r}; "
                            "re-export the network")
        word = int(line, 16)
        if word >= limit:
            raise UserError(f"memory file {path} line {lineno}: word {line} is wider than "
                            f"{width} bits; re-export the network")
        words.append(word)
    return words


def _read_lines(path: Path, sha256: str | None = None) -> list[str]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"memory file {path} not found; re-export the network") from None
    except OSError as exc:
        raise UserError(f"cannot read memory file {path}: {exc}") from None
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256.lower():
        raise UserError(f"memory file {path} does not match its sha256 in network.json (it "
                        "was changed or corrupted after export); re-export the network")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise UserError(f"cannot read memory file {path}: {exc}") from None
    lines = text.splitlines()
    # Tolerate one trailing empty line sequence (editors) but nothing else.
    while lines and lines[-1].strip() == "":
        lines.pop()
    return [line.strip() for line in lines]


def read_mem(path: str | Path, width: int, depth: int | None = None, *,
             sha256: str | None = None) -> list[int]:
    """Read a ``$readmemh`` file written by :func:`write_mem`.

    Parameters
    ----------
    path
        The ``.mem`` file.
    width
        Word width in bits: every line must have exactly ``ceil(width / 4)`` hex digits
        and a value below ``2**width``.
    depth
        Expected number of words (``None``: any).
    sha256
        Expected hex SHA-256 of the file's bytes (``None``: not checked), e.g. the digest
        ``network.json`` records; checked before the words are parsed.

    Raises
    ------
    sw.errors.UserError
        On a missing file, a digest mismatch, wrong line count, wrong digit count, bad digit
        or overwide word.
    """
    path = Path(path)
    return _parse_words(path, _read_lines(path, sha256), width, depth)


def write_coe(path: str | Path, words: Sequence[int], width: int) -> None:
    """Write a Xilinx ``.coe`` file (radix 16) holding the same words as the ``.mem`` twin."""
    lines = format_words(words, width)
    body = ",\n".join(lines) + ";\n" if lines else ";\n"
    _write_text(Path(path), "memory_initialization_radix=16;\nmemory_initialization_vector=\n" + body)


def read_coe(path: str | Path, width: int, depth: int | None = None) -> list[int]:
    """Read a ``.coe`` file written by :func:`write_coe` (same checks as :func:`read_mem`)."""
    path = Path(path)
    text = "\n".join(_read_lines(path))
    head, sep, vector = text.partition("memory_initialization_vector=")
    if not sep or "memory_initialization_radix=16;" not in head.replace(" ", ""):
        raise UserError(f"{path} is not a radix-16 .coe file; re-export the network")
    vector = vector.strip()
    if not vector.endswith(";"):
        raise UserError(f"{path}: .coe vector does not end with ';'; re-export the network")
    items = [item.strip() for item in vector[:-1].replace("\n", "").split(",")]
    if items == [""]:
        items = []
    return _parse_words(path, items, width, depth)
