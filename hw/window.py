"""Streaming sliding-window generator (im2col) for binary and 2-bit convolution layers.

Pixel stream: images one after another, pixels in row-major ``(y, x)`` order, each pixel's
``C`` channels as ``G = C/SIMD`` beats of ``SIMD`` elements (beat ``g``, element ``j`` = channel
``g*SIMD + j``), elements :data:`hw.width_converter.BIT` or :data:`hw.width_converter.ML_PAIR`,
payload :func:`hw.width_converter.beat_layout`.  No ``last`` flag: images are counted.

The output is the same kind of stream, one ``K*K*C``-element window vector per output position:
what a layer engine (``hw/mvtu.py``) with ``SIMD`` inputs per beat consumes as the input vector
of a convolution lowered to a matrix-vector product.
"""

# Ref: FINN's ConvolutionInputGenerator (finn-hlslib slidingwindow.h): the same output order
# (ky, kx, channel fold) per output pixel from a line buffer filled by the input stream.  FINN
# rotates K/S + 1 blocks of S rows (and requires K % S == 0); this generator keeps a circular
# buffer of words with a word-granular free/ready count, for any K and S, and overlaps images.

from __future__ import annotations

from dataclasses import dataclass

from amaranth import Module, Mux, Signal
from amaranth.lib.memory import Memory

from .pixel_stream import PixelStreamStage
from .width_converter import beat_layout, plane_names

__all__ = ["SlidingWindowGenerator", "WindowTiming", "window_geometry"]


@dataclass(frozen=True)
class _Geometry:
    channels: int
    height: int
    width: int
    kernel: int
    stride: int
    simd: int

    @property
    def folds(self) -> int:            # G, beats per pixel
        return self.channels // self.simd

    @property
    def out_height(self) -> int:
        return (self.height - self.kernel) // self.stride + 1

    @property
    def out_width(self) -> int:
        return (self.width - self.kernel) // self.stride + 1

    @property
    def window_beats(self) -> int:     # K*K*G
        return self.kernel * self.kernel * self.folds

    @property
    def span(self) -> int:
        """Offset of a window's last word from its first: ``((K-1)*W + K)*G - 1``."""
        return ((self.kernel - 1) * self.width + self.kernel) * self.folds - 1

    @property
    def col_jump(self) -> int:
        """Origin advance to the next window of the same output row: ``S*G``."""
        return self.stride * self.folds

    @property
    def row_jump(self) -> int:
        """Origin advance from an output row's last window to the next row's first."""
        return (self.stride * self.width - (self.out_width - 1) * self.stride) * self.folds

    @property
    def image_jump(self) -> int:
        """Origin advance from an image's last window to the next image's first."""
        s, w = self.stride, self.width
        return (self.height * w - (self.out_height - 1) * s * w
                - (self.out_width - 1) * s) * self.folds

    @property
    def max_jump(self) -> int:
        jumps = [self.image_jump]
        if self.out_height > 1:
            jumps.append(self.row_jump)
        if self.out_width > 1:
            jumps.append(self.col_jump)
        return max(jumps)

    @property
    def buffer_words(self) -> int:
        """``D = span + 1 + max(0, J - (K*K*G - 1))``, ``J`` = the largest origin advance."""
        return self.span + 1 + max(0, self.max_jump - (self.window_beats - 1))

    @property
    def beats_in_per_image(self) -> int:
        return self.height * self.width * self.folds

    @property
    def beats_out_per_image(self) -> int:
        return self.out_height * self.out_width * self.window_beats

    @property
    def ahead_min(self) -> int:
        """Lowest value the ``ahead`` count can take (after an origin advance)."""
        return min(0, self.span + 1 - self.max_jump)


def window_geometry(*, channels, height, width, kernel, stride=1, simd) -> _Geometry:
    """Check the parameters (one-line ``ValueError``) and return the window geometry."""
    for name, value in (("channels", channels), ("height", height), ("width", width),
                        ("kernel", kernel), ("stride", stride), ("simd", simd)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    if channels % simd:
        raise ValueError(f"simd must divide channels {channels}, not {simd!r}")
    if kernel > height or kernel > width:
        raise ValueError(f"kernel {kernel} is larger than the {height}x{width} image")
    return _Geometry(channels, height, width, kernel, stride, simd)


class WindowTiming:
    """Cycle-exact timing model of :class:`SlidingWindowGenerator` (counters, no data).

    The stage-model interface of ``hw/cycle_model.py``: :meth:`valid` (``o.valid`` this cycle),
    :meth:`ready` (``i.ready`` this cycle; independent of the downstream ready, as in the
    hardware), :meth:`step` (one clock edge, given which handshakes fired in this cycle).
    Constructed from the generator's parameters (``elem_shape`` does not matter) or by
    :meth:`SlidingWindowGenerator.timing_model`.
    """

    __slots__ = ("geometry", "_offs", "_deltas", "_nb", "_nw", "_depth",
                 "_ahead", "_b", "_w", "_valid")

    def __init__(self, *, channels, height, width, kernel, stride=1, simd):
        geo = window_geometry(channels=channels, height=height, width=width, kernel=kernel,
                              stride=stride, simd=simd)
        self.geometry = geo
        k, w, g = geo.kernel, geo.width, geo.folds
        # Offset of each beat's word from its window's first word, beats in (ky, kx, g) order.
        self._offs = [(ky * w + kx) * g + f for ky in range(k) for kx in range(k)
                      for f in range(g)]
        # Origin advance after each window of an image (row-major output positions).
        oh, ow = geo.out_height, geo.out_width
        self._deltas = [geo.col_jump if ox < ow - 1 else
                        (geo.row_jump if oy < oh - 1 else geo.image_jump)
                        for oy in range(oh) for ox in range(ow)]
        self._nb = len(self._offs)
        self._nw = len(self._deltas)
        self._depth = geo.buffer_words
        self._ahead = 0        # words accepted minus the current window's first word
        self._b = 0            # next beat to read within the window
        self._w = 0            # window index within the image
        self._valid = False    # output register full

    def valid(self) -> bool:
        return self._valid

    def ready(self, down_ready: bool = True) -> bool:
        return self._ahead < self._depth

    def step(self, in_fire: bool, out_fire: bool, cycle: int = 0, in_valid: bool = True) -> None:
        if out_fire or not self._valid:
            issue = self._offs[self._b] < self._ahead
            self._valid = issue
            if issue:
                b = self._b + 1
                if b == self._nb:
                    self._b = 0
                    self._ahead -= self._deltas[self._w]
                    w = self._w + 1
                    self._w = 0 if w == self._nw else w
                else:
                    self._b = b
        if in_fire:
            self._ahead += 1


class SlidingWindowGenerator(PixelStreamStage):
    """Turn a pixel stream into the stream of ``K x K`` convolution windows (stride ``S``).

    Parameters
    ----------
    elem_shape : :data:`BIT` or :data:`ML_PAIR`
        Element kind.
    channels : int
        ``C``, channels per pixel.
    height, width : int
        ``H x W`` pixels per input image (already padded).
    kernel : int
        ``K``, window side; at most ``min(H, W)``.
    stride : int
        ``S >= 1``.
    simd : int
        Elements per beat on both ports; divides ``C`` (``G = C/simd`` beats per pixel).

    Interface
    ---------
    i : In(stream.Signature(beat_layout(elem_shape, simd)))
        Images back to back, pixels row-major, beat ``g`` of a pixel = channels
        ``g*simd .. g*simd + simd - 1`` (element ``j`` = channel ``g*simd + j``).
        ``beats_in_per_image = H*W*G``.
    o : Out(stream.Signature(beat_layout(elem_shape, simd)))
        Per image the output positions ``(oy, ox)`` row-major, ``OH = (H-K)//S + 1``,
        ``OW = (W-K)//S + 1``; per position ``K*K*G`` beats in ``(ky, kx, g)`` order (``g``
        fastest), element ``j`` = channel ``g*simd + j`` of input pixel
        ``(oy*S + ky, ox*S + kx)``.  So element ``j`` of beat ``b`` of a position is window
        vector element ``b*simd + j = (ky*K + kx)*C + g*simd + j``.
        ``beats_out_per_image = OH*OW*K*K*G``.  Pixels outside every window (the last
        ``(H-K) % S`` rows and ``(W-K) % S`` columns) are accepted and dropped.

    Storage
    -------
    A circular line buffer (``lib.memory.Memory``, one write port, one synchronous
    *non-transparent* read port) of ``buffer_words = D`` words of ``simd`` elements; input word
    ``n`` (counted over all images) goes to address ``n mod D``.  With ``span = ((K-1)*W +
    K)*G - 1`` (a window's last word relative to its first) and ``J`` the largest advance of
    the window origin (``S*G`` within an output row, ``(S*W - (OW-1)*S)*G`` to the next row,
    ``(H*W - (OH-1)*S*W - (OW-1)*S)*G`` to the next image; only the advances that occur)::

        D = span + 1 + max(0, J - (K*K*G - 1))

    For stride 1 this is ``D = (2*(K-1)*W - K*(K-2))*G + 1`` words, e.g. ``(4*W - 3)*G + 1``
    for ``K = 3`` (FINN's ``K + S`` rows: ``4*W*G``).  ``buffer_bits = D*simd`` (``2*D*simd``
    for :data:`ML_PAIR`).

    Timing (cycle exact; :class:`WindowTiming` is the model)
    --------------------------------------------------------
    State: ``ahead`` = input words accepted minus the first word (origin) of the window being
    read; the position of the next beat to read (its word offset ``off`` from the origin); the
    output register's ``valid``.  Each cycle:

    * ``i.ready = ahead < D`` (registered state; independent of ``o.ready``).  So the input
      stalls exactly when it is ``D`` words ahead of the origin of the window being read; it
      never waits for an image boundary (the next image's rows arrive while the last windows
      of the previous one are read).  Word ``n`` overwrites word ``n - D``, which is then
      before the origin: no beat still to be read needs it.
    * ``o.valid`` = the output register is full; its payload is the read port's data, held
      (read enable low) while ``o.valid & ~o.ready``.
    * The next beat is read (``issue``) when the output register is empty or its beat leaves
      (``~o.valid | o.ready``, combinational from ``o.ready`` to the read enable; the read
      port's data register is the output register) and its word was accepted in an earlier
      cycle (``off < ahead``, so the non-transparent read never needs a word being written);
      the register is then full in the next cycle, else it empties if its beat left.
    * ``ahead' = ahead + [i fires] - advance`` where ``advance`` is the origin advance when the
      issued beat is the last of its window (else 0).

    A word accepted at cycle ``t`` can be on ``o`` at cycle ``t + 2`` at the earliest
    (``latency == 2``): the beat is read at ``t + 1`` and valid from ``t + 2``.  An empty
    generator offers an image's first beat 2 cycles after accepting its first input beat (the
    window's later beats follow as their rows arrive).  With the input always valid and
    ``o.ready`` always high the output runs at one beat per cycle whenever the data are there,
    and the steady-state interval is exactly ``cycles_per_image = max(beats_in_per_image,
    beats_out_per_image)`` cycles per image: no cycle is lost at row or image boundaries
    (with the buffer size above; checked with :class:`WindowTiming` for every ``H, W <= 12``,
    ``K <= min(H, W)``, ``S <= 4``, ``G <= 5``, and in ``tests/test_hw_window.py``).
    """

    def __init__(self, elem_shape, *, channels, height, width, kernel, stride=1, simd):
        plane_names(elem_shape)
        self._geo = window_geometry(channels=channels, height=height, width=width,
                                    kernel=kernel, stride=stride, simd=simd)
        super().__init__(elem_shape, channels=channels, height=height, width=width,
                         elems_per_beat=simd, name="simd")

    kernel = property(lambda self: self._geo.kernel)
    stride = property(lambda self: self._geo.stride)
    simd = property(lambda self: self._geo.simd)
    out_height = property(lambda self: self._geo.out_height)
    out_width = property(lambda self: self._geo.out_width)
    beats_out_per_image = property(lambda self: self._geo.beats_out_per_image)
    buffer_words = property(lambda self: self._geo.buffer_words)

    @property
    def window_beats(self) -> int:
        """Beats per output position, ``K*K*G``."""
        return self._geo.window_beats

    @property
    def buffer_bits(self) -> int:
        """Line buffer size in bits (``D`` words of ``simd`` or ``2*simd`` bits)."""
        return self.buffer_words * self.simd * (2 if self._planes else 1)

    @property
    def latency(self) -> int:
        """Cycles from accepting a word to offering a beat of it, at the earliest."""
        return 2

    @property
    def cycles_per_image(self) -> int:
        """Steady-state cycles per image with an ideal source and sink."""
        return max(self.beats_in_per_image, self.beats_out_per_image)

    def timing_model(self) -> WindowTiming:
        """A fresh cycle-exact :class:`WindowTiming` of this generator (reset state)."""
        g = self._geo
        return WindowTiming(channels=g.channels, height=g.height, width=g.width,
                            kernel=g.kernel, stride=g.stride, simd=g.simd)

    def elaborate(self, platform):
        m = Module()
        geo = self._geo
        k, w, nf = geo.kernel, geo.width, geo.folds
        oh, ow = geo.out_height, geo.out_width
        depth = geo.buffer_words

        m.submodules.buffer = buf = Memory(shape=beat_layout(self._elem_shape, geo.simd),
                                           depth=depth, init=[])
        wr = buf.write_port()
        rd = buf.read_port(transparent_for=())

        ahead = Signal(range(geo.ahead_min, depth + 1))
        wptr = Signal(range(depth))             # address of the next input word
        origin = Signal(range(depth))           # address of the window's first word
        off = Signal(range(geo.span + 1))       # next beat's word offset from the origin
        col = Signal(range(k * nf))             # kx*G + g of the next beat
        ky = Signal(range(k))
        ox = Signal(range(ow))
        oy = Signal(range(oh))
        o_valid = Signal()

        i_fire = Signal()
        can_take = Signal()
        issue = Signal()
        m.d.comb += [
            self.i.ready.eq(ahead < depth),
            i_fire.eq(self.i.valid & self.i.ready),
            self.o.valid.eq(o_valid),
            self.o.payload.eq(rd.data),
            can_take.eq(~o_valid | self.o.ready),
            issue.eq(can_take & (off < ahead)),
        ]

        # Input: write every accepted word at the next address of the circular buffer.
        m.d.comb += [wr.addr.eq(wptr), wr.data.eq(self.i.payload), wr.en.eq(i_fire)]
        with m.If(i_fire):
            with m.If(wptr == depth - 1):
                m.d.sync += wptr.eq(0)
            with m.Else():
                m.d.sync += wptr.eq(wptr + 1)

        # Read the next beat: address rd_ptr = origin + off (mod D), kept in a register of its
        # own (stepped beside `off` and `origin` below) so that the buffer's read address
        # comes straight from flip-flops; data on o in the next cycle.
        rd_ptr = Signal(range(depth))
        m.d.comb += [rd.addr.eq(rd_ptr), rd.en.eq(issue)]

        def wrapped(value, step, name):
            """``(value + step) mod D`` for ``0 <= step < D``."""
            total = Signal(range(2 * depth), name=name)
            m.d.comb += total.eq(value + step)
            return Mux(total >= depth, total - depth, total)

        with m.If(can_take):
            m.d.sync += o_valid.eq(issue)

        # Beat position and the origin advance after a window's last beat.
        col_end = col == k * nf - 1
        last_beat = col_end & (ky == k - 1)
        advance = Signal(range(geo.max_jump + 1))
        with m.If(issue & last_beat):
            with m.If(ox != ow - 1):
                m.d.comb += advance.eq(geo.col_jump)
            with m.Elif(oy != oh - 1):
                m.d.comb += advance.eq(geo.row_jump)
            with m.Else():
                m.d.comb += advance.eq(geo.image_jump)
        m.d.sync += ahead.eq(ahead + i_fire - advance)

        new_origin = wrapped(origin, advance, "new_origin")
        m.d.sync += origin.eq(new_origin)

        # off's step to the next kernel row (< D whenever a window has two rows; K = 1 never
        # takes that step).
        row_step = ((w - k) * nf + 1) % depth
        with m.If(issue):
            with m.If(last_beat):
                m.d.sync += [col.eq(0), ky.eq(0), off.eq(0), rd_ptr.eq(new_origin)]
                with m.If(ox == ow - 1):
                    m.d.sync += ox.eq(0)
                    with m.If(oy == oh - 1):
                        m.d.sync += oy.eq(0)
                    with m.Else():
                        m.d.sync += oy.eq(oy + 1)
                with m.Else():
                    m.d.sync += ox.eq(ox + 1)
            with m.Elif(col_end):
                m.d.sync += [col.eq(0), ky.eq(ky + 1), off.eq(off + row_step),
                             rd_ptr.eq(wrapped(rd_ptr, row_step, "rd_ptr_row"))]
            with m.Else():
                m.d.sync += [col.eq(col + 1), off.eq(off + 1),
                             rd_ptr.eq(wrapped(rd_ptr, 1, "rd_ptr_next"))]
        return m
