"""Spatial zero padding of a pixel stream of binary or 2-bit activations.

Pixel stream: images one after another, pixels in row-major ``(y, x)`` order, each pixel's
``C`` channels as ``C/n`` beats of ``n`` elements (beat ``g``, element ``j`` = channel
``g*n + j``), elements :data:`hw.width_converter.BIT` or :data:`hw.width_converter.ML_PAIR`,
payload :func:`hw.width_converter.beat_layout`.  No ``last`` flag: images are counted.
"""

# Ref: FINN's FMPadding / FMPadding_Batch (finn-hlslib streamtools.h): the same output order,
# padding beats generated on the fly between passed-through input beats.

from __future__ import annotations

from amaranth import Module, Signal, Value

from .pixel_stream import PixelStreamStage, check_positive

__all__ = ["PaddingStage", "PaddingTiming"]


def _check_geometry(channels, height, width, pad, elems_per_beat):
    check_positive(channels=channels, height=height, width=width,
                   elems_per_beat=elems_per_beat)
    if not isinstance(pad, int) or isinstance(pad, bool) or pad < 0:
        raise ValueError(f"pad must be a non-negative integer, not {pad!r}")
    if channels % elems_per_beat:
        raise ValueError(f"elems_per_beat must divide channels {channels}, "
                         f"not {elems_per_beat!r}")


class PaddingStage(PixelStreamStage):
    """Surround every ``H x W`` image with ``pad`` pixels of all-zero elements on each side.

    Parameters
    ----------
    elem_shape : :data:`BIT` or :data:`ML_PAIR`
        Element kind.  A padding element has every plane bit 0: code 0 for ``ML_PAIR``, bit 0
        (i.e. -1) for ``BIT``.
    channels : int
        ``C``.
    height, width : int
        ``H x W`` input pixels per image.
    pad : int
        ``p >= 0`` pixels added on every side.  ``pad == 0`` builds a plain one-register
        pass-through with the same timing rules.
    elems_per_beat : int
        ``n``, elements per beat on both ports; divides ``C`` (``G = C/n`` beats per pixel).

    Interface
    ---------
    i : In(stream.Signature(beat_layout(elem_shape, n)))
    o : Out(stream.Signature(beat_layout(elem_shape, n)))
        Per image ``(H + 2p) x (W + 2p)`` pixels, row-major, ``G`` beats each: the input
        pixel ``(y - p, x - p)`` where that lies inside the image, else ``G`` zero beats.

    Storage
    -------
    One output register of one beat, ``full`` and the position of the next output slot
    (beat, column, row counters); no memory.

    Timing (cycle exact)
    --------------------
    The output register refills whenever it is empty or its beat leaves (``load = ~full |
    o.ready``).  The next output slot is a *padding slot* or an *input slot*.

    * ``o.valid = full`` (registered); the payload is held while ``o.valid & ~o.ready``.
    * ``i.ready = load & ~padding_slot`` (depends on ``o.ready`` combinationally).
    * In a cycle with ``load``: a padding slot loads a zero beat (no input needed; the
      image's *first* slot only once ``i.valid`` is high, i.e. the image's first input beat
      is offered), an input slot loads the input beat if ``i.valid``; either advances the
      slot position and sets ``full``.  Otherwise ``full`` clears.

    So a beat is offered the cycle after it is loaded (``latency == 1``), padding beats are
    produced without waiting for the input once the image has begun (an image begins when
    its first input beat is offered, so an idle stage does not run ahead and the timing
    depends only on when data arrives), and with ``o.ready`` high and the input always
    valid the stage emits one beat every cycle: ``beats_out_per_image = (H+2p)*(W+2p)*G``
    cycles per image.  The input is refused while padding slots are loaded: ``2*p*G`` slots
    between two input rows and ``2*p*(W + 2p + 1)*G`` between the last beat of one image and
    the first of the next (that many cycles at full output rate), and whenever the output
    register is full and ``o.ready`` is low.
    """

    def __init__(self, elem_shape, *, channels: int, height: int, width: int, pad: int,
                 elems_per_beat: int):
        _check_geometry(channels, height, width, pad, elems_per_beat)
        self._pad = pad
        super().__init__(elem_shape, channels=channels, height=height, width=width,
                         elems_per_beat=elems_per_beat)

    pad = property(lambda self: self._pad)

    @property
    def out_height(self) -> int:
        return self._height + 2 * self._pad

    @property
    def out_width(self) -> int:
        return self._width + 2 * self._pad

    @property
    def cycles_per_image(self) -> int:
        """Cycles per image at full rate: one per output beat."""
        return self.beats_out_per_image

    @property
    def latency(self) -> int:
        """Cycles from accepting an input beat to offering it."""
        return 1

    def timing_model(self) -> "PaddingTiming":
        """A fresh :class:`PaddingTiming` for this stage."""
        return PaddingTiming(channels=self._channels, height=self._height, width=self._width,
                             pad=self._pad, elems_per_beat=self._n)

    def elaborate(self, platform):
        m = Module()
        p, g_n = self._pad, self.folds
        h, w = self._height, self._width
        oh, ow = self.out_height, self.out_width

        # Position of the next output slot.
        g = Signal(range(g_n), name="g")
        x = Signal(range(ow), name="x")
        y = Signal(range(oh), name="y")
        pad_slot = Signal()
        if p:
            m.d.comb += pad_slot.eq((y < p) | (y >= p + h) | (x < p) | (x >= p + w))

        full = Signal()
        beat = Signal(Value.cast(self.o.payload).shape())
        load = Signal()
        m.d.comb += [
            load.eq(~full | self.o.ready),
            self.i.ready.eq(load & ~pad_slot),
            self.o.valid.eq(full),
            Value.cast(self.o.payload).eq(beat),
        ]

        # An image's first slot (a padding slot when p > 0) waits until the image's first
        # input beat is offered: the stage's timing is then set by its data alone, not by
        # how long it sat idle before the image came.
        first = Signal()
        m.d.comb += first.eq((g == 0) & (x == 0) & (y == 0))
        advance = Signal()
        with m.If(load):
            with m.If(pad_slot & (~first | self.i.valid)):
                m.d.sync += [full.eq(1), beat.eq(0)]
                m.d.comb += advance.eq(1)
            with m.Elif(~pad_slot & self.i.valid):
                m.d.sync += [full.eq(1), beat.eq(Value.cast(self.i.payload))]
                m.d.comb += advance.eq(1)
            with m.Else():
                m.d.sync += full.eq(0)

        with m.If(advance):
            with m.If(g == g_n - 1):
                m.d.sync += g.eq(0)
                with m.If(x == ow - 1):
                    m.d.sync += x.eq(0)
                    with m.If(y == oh - 1):
                        m.d.sync += y.eq(0)
                    with m.Else():
                        m.d.sync += y.eq(y + 1)
                with m.Else():
                    m.d.sync += x.eq(x + 1)
            with m.Else():
                m.d.sync += g.eq(g + 1)
        return m


class PaddingTiming:
    """Cycle-exact counter model of :class:`PaddingStage` (no data).

    The interface of the stage models in :mod:`hw.cycle_model`: ``valid()`` is ``o.valid``
    and ``ready(down_ready)`` is ``i.ready`` in the current cycle (``down_ready`` =
    ``o.ready``); ``step(in_fire, out_fire, cycle)`` advances over one clock edge.
    """

    __slots__ = ("_pads", "_beats", "pos", "full")

    def __init__(self, *, channels: int, height: int, width: int, pad: int,
                 elems_per_beat: int):
        _check_geometry(channels, height, width, pad, elems_per_beat)
        g_n = channels // elems_per_beat
        ow = width + 2 * pad
        # Per output beat of an image: is it a padding slot?
        pads = bytearray(b"\x01") * ((height + 2 * pad) * ow * g_n)
        for yy in range(pad, pad + height):
            start = (yy * ow + pad) * g_n
            pads[start:start + width * g_n] = bytes(width * g_n)
        self._pads = bytes(pads)
        self._beats = len(pads)
        self.pos = 0          # index of the next output slot within its image
        self.full = False     # the output register holds a beat

    def valid(self) -> bool:
        return self.full

    def ready(self, down_ready: bool) -> bool:
        return ((not self.full) or down_ready) and not self._pads[self.pos]

    def step(self, in_fire: bool, out_fire: bool, cycle: int, in_valid: bool = True) -> None:
        """One clock edge; ``in_valid`` is ``i.valid`` (an image's first slot waits for it)."""
        if self.full and not out_fire:
            return                                   # held: nothing loads
        if in_fire or (self._pads[self.pos] and (self.pos or in_valid)):
            self.full = True
            self.pos += 1
            if self.pos == self._beats:
                self.pos = 0
        else:
            self.full = False
