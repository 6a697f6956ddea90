"""Output serializer: last-layer score beats -> class index + class scores on 32-bit AXI-Stream.

The last layer emits ``NF`` beats per image of ``PE`` signed scores each (neuron ``nf*PE + p`` in
lane ``p``); neurons ``>= classes`` are padding and are dropped.  Per image this block emits
``1 + classes`` beats: beat 0 the predicted class (smallest index among the maximal scores, the
golden model's rule), zero-extended; beats ``1..classes`` the scores, sign-extended; ``last`` on
the final beat.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["OutputSerializer", "SerializerTiming", "SCORE_BEAT_BITS"]

#: Width of an output beat.
SCORE_BEAT_BITS = 32


class OutputSerializer(wiring.Component):
    """Collect one image's scores, then stream class index and scores.

    Parameters
    ----------
    classes : int
        ``C``, true number of classes (``MH`` of the last layer).
    pe : int
        Scores per input beat.
    neuron_folds : int
        ``NF``, input beats per image (``NF * pe >= classes``).
    acc_width : int
        Width of one signed score (at most 32).

    Interface
    ---------
    i : In(stream.Signature(data.ArrayLayout(signed(acc_width), pe)))
    o : Out(stream.Signature(data.StructLayout({"data": 32, "last": 1})))

    Timing
    ------
    Double-buffered, so collecting one image overlaps emitting the previous one.
    *Collect*: ``i.ready = ~have``; beats are shifted into the collect registers and the
    running argmax is updated; the cycle after the ``NF``-th beat ``have`` is set.
    *Transfer*: in a cycle with ``have`` set in which the emitter is idle or accepts its last
    beat, the scores and class move to the emit registers (``have`` clears, so the next
    image's first beat can be accepted the following cycle).
    *Emit*: from the cycle after the transfer, ``o.valid = 1`` with beats ``0..classes``,
    one per accepted handshake.  So with the output always ready: first output beat 2 cycles
    after the last input beat; per image ``NF + 1`` collect cycles and ``1 + classes`` emit
    cycles, the larger of which bounds the throughput.
    """

    def __init__(self, classes: int, pe: int, neuron_folds: int, acc_width: int):
        for name, value in (("classes", classes), ("pe", pe), ("neuron_folds", neuron_folds),
                            ("acc_width", acc_width)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if pe * neuron_folds < classes:
            raise ValueError(f"pe*neuron_folds must be at least classes={classes}, "
                             f"not {pe}*{neuron_folds}")
        if (pe * neuron_folds) - classes >= pe:
            raise ValueError(f"padding must be less than one fold: pe={pe}, "
                             f"neuron_folds={neuron_folds}, classes={classes}")
        if acc_width > SCORE_BEAT_BITS:
            raise ValueError(f"acc_width must be at most {SCORE_BEAT_BITS}, not {acc_width!r}")
        if classes >= 2 ** SCORE_BEAT_BITS:
            raise ValueError(f"classes must fit in {SCORE_BEAT_BITS} bits, not {classes!r}")
        self._classes = classes
        self._pe = pe
        self._nf = neuron_folds
        self._acc_width = acc_width
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(signed(acc_width), pe))),
            "o": Out(stream.Signature(data.StructLayout({"data": SCORE_BEAT_BITS, "last": 1}))),
        })

    classes = property(lambda self: self._classes)
    pe = property(lambda self: self._pe)
    neuron_folds = property(lambda self: self._nf)
    acc_width = property(lambda self: self._acc_width)

    @property
    def beats_per_image(self) -> int:
        """Output beats per image: class index plus one per class."""
        return 1 + self._classes

    def elaborate(self, platform):
        m = Module()
        pe, nf, classes, w = self._pe, self._nf, self._classes, self._acc_width
        total = pe * nf

        # Collect side: score shift register, after NF beats entry k holds neuron k's score.
        scores = [Signal(signed(w), name=f"score{k}") for k in range(total)]
        best_val = Signal(signed(w))
        best_idx = Signal(range(max(total, 2)))
        fold = Signal(range(max(nf, 2)))
        have = Signal()
        # Emit side.
        out_scores = [Signal(signed(w), name=f"out_score{k}") for k in range(classes)]
        out_class = Signal(range(max(total, 2)))
        emitting = Signal()
        out_beat = Signal(range(classes + 1))

        # Argmax of the incoming beat's real lanes: strict '>' keeps the smallest index.
        lanes = [self.i.payload[p] for p in range(pe)]
        cand_val = lanes[0]
        cand_idx = fold * pe
        for p in range(1, pe):
            idx = fold * pe + p
            take = Signal(name=f"take{p}")
            # Lane p is real only while fold*pe + p < classes (only the last fold is padded).
            m.d.comb += take.eq((lanes[p] > cand_val) & (idx < classes))
            new_val = Signal(signed(w), name=f"cand_val{p}")
            new_idx = Signal(range(total), name=f"cand_idx{p}")
            m.d.comb += [
                new_val.eq(Mux(take, lanes[p], cand_val)),
                new_idx.eq(Mux(take, idx, cand_idx)),
            ]
            cand_val, cand_idx = new_val, new_idx

        m.d.comb += self.i.ready.eq(~have)
        with m.If(self.i.valid & self.i.ready):
            for k in range(total - pe):
                m.d.sync += scores[k].eq(scores[k + pe])
            for p in range(pe):
                m.d.sync += scores[total - pe + p].eq(lanes[p])
            with m.If((fold == 0) | (cand_val > best_val)):
                m.d.sync += [best_val.eq(cand_val), best_idx.eq(cand_idx)]
            with m.If(fold == nf - 1):
                m.d.sync += [fold.eq(0), have.eq(1)]
            with m.Else():
                m.d.sync += fold.eq(fold + 1)

        # Emit: beat 0 = class index, then score0, score1, ... shifted out of entry 0.
        o_fire = Signal()
        m.d.comb += [
            self.o.valid.eq(emitting),
            self.o.payload.last.eq(out_beat == classes),
            o_fire.eq(self.o.valid & self.o.ready),
        ]
        with m.If(out_beat == 0):
            m.d.comb += self.o.payload.data.eq(out_class)
        with m.Else():
            m.d.comb += self.o.payload.data.eq(out_scores[0])
        with m.If(o_fire):
            with m.If(out_beat != 0):
                for k in range(classes - 1):
                    m.d.sync += out_scores[k].eq(out_scores[k + 1])
            with m.If(out_beat == classes):
                m.d.sync += [emitting.eq(0), out_beat.eq(0)]
            with m.Else():
                m.d.sync += out_beat.eq(out_beat + 1)

        # Transfer a complete image to the emitter when it is (becoming) idle.
        with m.If(have & (~emitting | (o_fire & self.o.payload.last))):
            m.d.sync += [have.eq(0), emitting.eq(1), out_beat.eq(0), out_class.eq(best_idx)]
            m.d.sync += [out_scores[k].eq(scores[k]) for k in range(classes)]
        return m


class SerializerTiming:
    """Cycle-exact model of :class:`OutputSerializer` (collect ``NF`` beats, hand over to the
    emit registers when they are idle or finishing, emit ``1 + C`` beats), stage-model
    interface of :mod:`hw.cycle_model`."""

    def __init__(self, classes: int, neuron_folds: int):
        self.nf, self.beats = neuron_folds, 1 + classes
        self.have = False
        self.emitting = False
        self.fold = 0
        self.out_beat = 0

    def valid(self):
        return self.emitting

    def ready(self, down_ready):
        return not self.have

    def step(self, in_fire, out_fire, cycle, in_valid=True):
        last_out = out_fire and self.out_beat == self.beats - 1
        transfer = self.have and (not self.emitting or last_out)
        if in_fire:
            if self.fold == self.nf - 1:
                self.fold, self.have = 0, True
            else:
                self.fold += 1
        if out_fire:
            if last_out:
                self.emitting, self.out_beat = False, 0
            else:
                self.out_beat += 1
        if transfer:
            self.have, self.emitting, self.out_beat = False, True, 0
