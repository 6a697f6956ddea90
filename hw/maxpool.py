"""Streaming max pooling over a pixel stream of binary or 2-bit activations.

Pixel stream: images one after another, pixels in row-major ``(y, x)`` order, each pixel's
``C`` channels as ``C/n`` beats of ``n`` elements (beat ``g``, element ``j`` = channel
``g*n + j``), elements :data:`hw.width_converter.BIT` or :data:`hw.width_converter.ML_PAIR`
(code ``q = 2*m + l``), payload :func:`hw.width_converter.beat_layout`.  No ``last`` flag:
images are counted.
"""

# Ref: FINN's StreamingMaxPool / StreamingMaxPool_Precision (finn-hlslib maxpool.h) pool into
# a row buffer and write the pooled row out after the window's rows; here the pooled beats
# leave while the window's last row streams in, so the input never waits for the output.

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, Value, unsigned
from amaranth.lib import memory

from .pixel_stream import PixelStreamStage, check_positive

__all__ = ["MaxPoolUnit", "MaxPoolTiming", "pool_output_size"]


def pool_output_size(size: int, kernel: int, stride: int) -> int:
    """Floor-mode output size ``(size - kernel) // stride + 1`` (PyTorch's MaxPool2d default)."""
    return (size - kernel) // stride + 1


class MaxPoolUnit(PixelStreamStage):
    """``K x K`` max pooling with stride ``S = K`` of a pixel stream, one input beat per cycle.

    Parameters
    ----------
    elem_shape : :data:`BIT` or :data:`ML_PAIR`
        Element kind.  ``BIT``: the pooled element is the OR of the window's bits (+1 wins);
        ``ML_PAIR``: the largest 2-bit code ``q = 2*m + l`` of the window, split back into
        its ``m`` / ``l`` planes.
    channels : int
        ``C``.
    height, width : int
        ``H x W`` input pixels per image.
    elems_per_beat : int
        ``n``, elements per beat on both ports; divides ``C`` (``G = C/n`` beats per pixel).
    kernel, stride : int
        ``K`` and ``S``; only ``S == K`` (non-overlapping windows) is built.

    Interface
    ---------
    i : In(stream.Signature(beat_layout(elem_shape, n)))
    o : Out(stream.Signature(beat_layout(elem_shape, n)))
        Per image ``OH x OW`` pooled pixels, ``OH = (H - K)//S + 1``, ``OW = (W - K)//S + 1``
        (floor mode), row-major, ``G`` beats each in the input's channel order.  Input rows
        ``y >= OH*K`` and columns ``x >= OW*K`` fit no window: they are accepted and dropped.

    Storage
    -------
    A row accumulator ``lib.memory.Memory`` of ``OW*G`` words of ``n`` elements (one
    synchronous read port, transparent for the one write port) holding the running maximum
    of every window of the current window row, plus one pipeline register of one beat.
    Every kept beat at ``(y, x, g)`` updates word ``(x//K)*G + g``: the window's first beat
    (``y%K == 0``, ``x%K == 0``) overwrites it, later beats fold in the maximum, and the
    window's last beat (``y%K == K-1``, ``x%K == K-1``) is sent out with the maximum instead
    of being written back.

    Timing (cycle exact)
    --------------------
    One pipeline stage holding the last accepted beat, ``pending`` = it completes a window.

    * ``o.valid = pending`` (registered); the payload is held while ``o.valid & ~o.ready``.
    * ``i.ready = ~pending | o.ready`` (depends on ``o.ready`` combinationally, like
      :class:`hw.thermometer.ThermometerEncoder`).
    * After a cycle with ``i.ready``: ``pending`` = a beat was accepted and it is the last
      beat of a kept window; otherwise ``pending`` is unchanged.

    So a window's pooled beat is offered the cycle after its last beat is accepted
    (``latency == 1``); the input waits only while a pooled beat is refused by ``o``.  With
    ``o.ready`` held high the unit accepts one beat per cycle indefinitely:
    ``beats_in_per_image = H*W*G`` cycles per image, ``beats_out_per_image = OH*OW*G`` of
    them with an output beat, during the last row of each window row (``G`` consecutive beats
    every ``K*G`` cycles).
    """

    def __init__(self, elem_shape, *, channels: int, height: int, width: int,
                 elems_per_beat: int, kernel: int = 2, stride: int = 2):
        check_positive(channels=channels, height=height, width=width,
                       elems_per_beat=elems_per_beat, kernel=kernel, stride=stride)
        if kernel > height or kernel > width:
            raise ValueError(f"kernel {kernel} is larger than the {height}x{width} image")
        if stride != kernel:
            raise ValueError(f"stride must equal kernel {kernel} (only non-overlapping "
                             f"pooling is built), not {stride!r}")
        self._kernel = kernel
        self._stride = stride
        super().__init__(elem_shape, channels=channels, height=height, width=width,
                         elems_per_beat=elems_per_beat)

    kernel = property(lambda self: self._kernel)
    stride = property(lambda self: self._stride)

    @property
    def out_height(self) -> int:
        return pool_output_size(self._height, self._kernel, self._stride)

    @property
    def out_width(self) -> int:
        return pool_output_size(self._width, self._kernel, self._stride)

    @property
    def cycles_per_image(self) -> int:
        """Cycles per image with ``o`` always ready: one per input beat."""
        return self.beats_in_per_image

    @property
    def latency(self) -> int:
        """Cycles from accepting a window's last beat to offering its pooled beat."""
        return 1

    @property
    def buffer_words(self) -> int:
        """Depth of the row accumulator memory (``OW*G`` words of ``n`` elements)."""
        return self.out_width * self.folds

    def timing_model(self) -> "MaxPoolTiming":
        """A fresh :class:`MaxPoolTiming` for this unit."""
        return MaxPoolTiming(channels=self._channels, height=self._height, width=self._width,
                             elems_per_beat=self._n, kernel=self._kernel, stride=self._stride)

    def _pool_max(self, a: Value, b: Value) -> Value:
        """Element-wise maximum of two raw beats."""
        n = self._n
        if self._planes is None:
            return a | b
        # StructLayout({"m": n, "l": n}): plane m at bits [0, n), plane l at [n, 2n).
        # max of q = 2*m + l, plane-wise: m = ma | mb; l from the larger m, or la | lb on a tie.
        ma, la, mb, lb = a[:n], a[n:], b[:n], b[n:]
        l = (ma & ~mb & la) | (~ma & mb & lb) | (~(ma ^ mb) & (la | lb))
        return Cat(ma | mb, l)

    def elaborate(self, platform):
        m = Module()
        k, g_n, w, h = self._kernel, self.folds, self._width, self._height
        ow, oh = self.out_width, self.out_height
        beat_w = Value.cast(self.i.payload).shape().width

        m.submodules.rowbuf = rowbuf = memory.Memory(
            shape=unsigned(beat_w), depth=self.buffer_words, init=[])
        wport = rowbuf.write_port()
        rport = rowbuf.read_port(domain="sync", transparent_for=(wport,))

        # Position of the next input beat.
        g = Signal(range(g_n), name="g")
        x = Signal(range(w), name="x")
        y = Signal(range(h), name="y")
        kx = Signal(range(k), name="kx")
        ky = Signal(range(k), name="ky")
        xo = Signal(range(w // k + 1), name="xo")

        # Pipeline stage: the last accepted kept beat.
        v1 = Signal()
        first1 = Signal()
        last1 = Signal()
        addr1 = Signal(range(self.buffer_words))
        beat1 = Signal(beat_w)

        pending = Signal()
        advance = Signal()
        i_fire = Signal()
        m.d.comb += [
            pending.eq(v1 & last1),
            advance.eq(~pending | self.o.ready),
            self.i.ready.eq(advance),
            i_fire.eq(self.i.valid & advance),
            self.o.valid.eq(pending),
        ]

        pooled = Signal(beat_w)
        m.d.comb += [
            pooled.eq(Mux(first1, beat1, self._pool_max(rport.data, beat1))),
            Value.cast(self.o.payload).eq(pooled),
            # A kept beat that does not end its window always completes in its cycle.
            wport.addr.eq(addr1),
            wport.data.eq(pooled),
            wport.en.eq(v1 & ~last1),
            rport.addr.eq(xo * g_n + g),
            rport.en.eq(advance),
        ]

        keep = (x < ow * k) & (y < oh * k)
        with m.If(advance):
            m.d.sync += v1.eq(i_fire & keep)
            with m.If(i_fire):
                m.d.sync += [
                    first1.eq((ky == 0) & (kx == 0)),
                    last1.eq((ky == k - 1) & (kx == k - 1)),
                    addr1.eq(xo * g_n + g),
                    beat1.eq(Value.cast(self.i.payload)),
                ]

        with m.If(i_fire):
            with m.If(g == g_n - 1):
                m.d.sync += g.eq(0)
                with m.If(x == w - 1):
                    m.d.sync += [x.eq(0), kx.eq(0), xo.eq(0)]
                    with m.If(y == h - 1):
                        m.d.sync += [y.eq(0), ky.eq(0)]
                    with m.Else():
                        m.d.sync += [y.eq(y + 1), ky.eq(Mux(ky == k - 1, 0, ky + 1))]
                with m.Else():
                    m.d.sync += x.eq(x + 1)
                    with m.If(kx == k - 1):
                        m.d.sync += [kx.eq(0), xo.eq(xo + 1)]
                    with m.Else():
                        m.d.sync += kx.eq(kx + 1)
            with m.Else():
                m.d.sync += g.eq(g + 1)
        return m


class MaxPoolTiming:
    """Cycle-exact counter model of :class:`MaxPoolUnit` (no data).

    The interface of the stage models in :mod:`hw.cycle_model`: ``valid()`` is ``o.valid``
    and ``ready(down_ready)`` is ``i.ready`` in the current cycle (``down_ready`` =
    ``o.ready``); ``step(in_fire, out_fire, cycle)`` advances over one clock edge.
    """

    __slots__ = ("_emits", "_beats", "pos", "pending")

    def __init__(self, *, channels: int, height: int, width: int, elems_per_beat: int,
                 kernel: int = 2, stride: int = 2):
        check_positive(channels=channels, height=height, width=width,
                        elems_per_beat=elems_per_beat, kernel=kernel, stride=stride)
        if channels % elems_per_beat or stride != kernel or kernel > min(height, width):
            raise ValueError(f"invalid max pool geometry: C={channels} n={elems_per_beat} "
                             f"{height}x{width} kernel={kernel} stride={stride}")
        g_n = channels // elems_per_beat
        oh = pool_output_size(height, kernel, stride)
        ow = pool_output_size(width, kernel, stride)
        # Per input beat of an image: does it complete a kept window?
        emits = bytearray(height * width * g_n)
        for yy in range(kernel - 1, oh * kernel, kernel):
            for xx in range(kernel - 1, ow * kernel, kernel):
                start = (yy * width + xx) * g_n
                emits[start:start + g_n] = b"\x01" * g_n
        self._emits = bytes(emits)
        self._beats = len(emits)
        self.pos = 0            # index of the next input beat within its image
        self.pending = False    # the pipeline register holds a pooled beat

    def valid(self) -> bool:
        return self.pending

    def ready(self, down_ready: bool) -> bool:
        return (not self.pending) or down_ready

    def step(self, in_fire: bool, out_fire: bool, cycle: int, in_valid: bool = True) -> None:
        if in_fire:
            self.pending = self._emits[self.pos] == 1
            self.pos += 1
            if self.pos == self._beats:
                self.pos = 0
        elif out_fire:
            self.pending = False
