"""Output serializer: last-layer score beats -> class index + class scores on 32-bit AXI-Stream.

The last layer emits ``NF`` beats per image of ``PE`` signed scores each (neuron ``nf*PE + p`` in
lane ``p``); neurons ``>= classes`` are padding and are dropped.  Per image this block emits
``1 + classes`` beats: beat 0 the predicted class (smallest index among the maximal scores, or
among the maximal keys ``scale_c*score_c + bias_c`` of a per-class integer map: the golden
model's rule, docs/compiled-network.md "Output"), zero-extended; beats ``1..classes`` the
scores, sign-extended; ``last`` on the final beat.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from sw.compiled_net import signed_bits

from .stream_slice import RegisterSlice, RegisterSliceTiming

__all__ = ["OutputSerializer", "SerializerTiming", "SCORE_BEAT_BITS", "argmax_latency"]

#: Width of an output beat.
SCORE_BEAT_BITS = 32


def argmax_latency(pe: int, keyed: bool = False) -> int:
    """Register levels of the serializer's argmax over ``pe`` lanes: the input register, the
    key register where a per-class map is applied (``keyed``), then two per tree level
    (compare, then select), ``ceil(log2(pe))`` levels."""
    return 1 + int(keyed) + 2 * (pe - 1).bit_length()


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
    keys : (scale, bias) or None
        Per-class integer map of the argmax keys, ``classes`` integers each (``None``: the
        scores themselves).  ``score_range`` then gives the scores' ``(lo, hi)``, from which
        the keys' width follows.

    Interface
    ---------
    i : In(stream.Signature(data.ArrayLayout(signed(acc_width), pe)))
    o : Out(stream.Signature(data.StructLayout({"data": 32, "last": 1})))

    Timing
    ------
    Double-buffered, so collecting one image overlaps emitting the previous one.
    *Collect*: ``i.ready`` is low while a complete image is held or its argmax is still in the
    compare pipeline; beats are shifted into the collect registers.
    *Argmax*: each accepted beat is registered, its real lanes are reduced by a pairwise
    compare tree (``argmax_latency = 1 + 2*ceil(log2(pe))`` register levels in all: the
    input register (with ``keys``, a second register holding each lane's key
    ``scale_c*score_c + bias_c``: one more level), then a compare and a select register per
    tree level; a strict ``>`` at
    every node keeps the smallest index among ties; scores are compared in offset binary,
    their sign bit inverted, so each compare is unsigned), then compared with the running
    best.  The
    cycle ``argmax_latency + 1`` after the ``NF``-th beat, ``have`` is set.
    *Transfer*: in a cycle with ``have`` set in which the emitter is idle or accepts its last
    beat, the scores and class move to the emit registers (``have`` clears, so the next
    image's first beat can be accepted the following cycle).
    *Emit*: from the cycle after the transfer, the emitter offers beats ``0..classes``, one
    per accepted handshake, to a :class:`hw.stream_slice.RegisterSlice` in front of ``o``
    (one cycle; ``o.valid``, ``o.payload`` and the emitter's ready are flip-flops, so the
    consumer's ``o.ready`` logic and the emitter's shift enables never share a path).  So
    with the output always ready: first output beat ``3 + argmax_latency`` cycles after the
    last input beat; per image ``NF + 1 + argmax_latency`` collect cycles and
    ``1 + classes`` emit cycles, the larger of which bounds the throughput.  No path holds
    more than one compare and one select.
    """

    def __init__(self, classes: int, pe: int, neuron_folds: int, acc_width: int, *,
                 keys=None, score_range=None):
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
        if keys is not None:
            scale, bias = (tuple(int(v) for v in k) for k in keys)
            if len(scale) != classes or len(bias) != classes:
                raise ValueError(f"keys must be two sequences of {classes} integers")
            if score_range is None:
                raise ValueError("keys need the scores' range (score_range=(lo, hi))")
            lo, hi = score_range
            ends = [s * v + b for s, b in zip(scale, bias) for v in (lo, hi)]
            self._key_width = signed_bits(min(ends), max(ends))
            keys = (scale, bias)
        else:
            self._key_width = acc_width
        self._keys = keys
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
    def keys(self):
        """``(scale, bias)`` of the per-class keys, or ``None``."""
        return self._keys

    @property
    def argmax_latency(self) -> int:
        """Register levels of the argmax: ``1 + 2 * ceil(log2(pe))`` (+1 with ``keys``)."""
        return argmax_latency(self._pe, self._keys is not None)

    @property
    def beats_per_image(self) -> int:
        """Output beats per image: class index plus one per class."""
        return 1 + self._classes

    def elaborate(self, platform):
        m = Module()
        pe, nf, classes, sw = self._pe, self._nf, self._classes, self._acc_width
        w = self._key_width             # width of the compared values
        total = pe * nf

        # Collect side: score shift register, after NF beats entry k holds neuron k's score.
        scores = [Signal(signed(sw), name=f"score{k}") for k in range(total)]
        # The argmax carries scores with their sign bit inverted (offset binary): ``a > b``
        # of two's-complement values is then an unsigned compare, one carry chain without the
        # sign fix-up logic behind it.
        best_val = Signal(unsigned(w))
        best_idx = Signal(range(max(total, 2)))
        fold = Signal(range(max(nf, 2)))
        base = Signal(range(max(total, 2)))     # fold * pe, counted up
        have = Signal()
        # Emit side.
        out_scores = [Signal(signed(sw), name=f"out_score{k}") for k in range(classes)]
        out_class = Signal(range(max(total, 2)))
        emitting = Signal()
        out_beat = Signal(range(classes + 1))

        i_fire = Signal()
        m.d.comb += i_fire.eq(self.i.valid & self.i.ready)
        last_beat = Signal()
        m.d.comb += last_beat.eq(i_fire & (fold == nf - 1))

        # Compare tree over the beat's lanes.  A node is (valid, value, lane); lanes of the
        # last fold beyond `classes` are padding (invalid).  Strict '>' keeps the lower lane.
        lane_bits = max(pe - 1, 1).bit_length()
        rem = classes - (nf - 1) * pe           # real lanes in the last fold
        nodes = []
        for p in range(pe):
            real = Const(1) if p < rem else (fold != nf - 1)
            nodes.append((real, self.i.payload[p], Const(p, lane_bits)))
        # Sideband travelling with the beat: it fired, it is the image's first / last beat,
        # and its base index.
        side = (i_fire, i_fire & (fold == 0), last_beat, base)
        # Level 0 registers the beat itself: the input stream's payload (a FIFO read port
        # upstream) then feeds flip-flops only, not the first compare.
        def delay(side, tag):
            regs = tuple(Signal.like(sig, name=f"arg{tag}_{n}")
                         for sig, n in zip(side, ("fire", "first", "last", "base")))
            m.d.sync += [r.eq(sig) for r, sig in zip(regs, side)]
            return regs

        leaves = []
        if self._keys is None:
            for p, (v_, x_, l_) in enumerate(nodes):
                v, x = Signal(name=f"arg0_{p}_valid"), Signal(unsigned(w), name=f"arg0_{p}_val")
                m.d.sync += [v.eq(v_), x.eq(Cat(x_[:-1], ~x_[-1]))]
                leaves.append((v, x, l_))
            side = delay(side, 0)
        else:
            # Register the beat with its lanes' (scale, bias) of this fold, then the keys.
            scale, bias = self._keys
            sc_w = signed_bits(min(scale), max(scale))
            bi_w = signed_bits(min(bias), max(bias))
            regs0 = []
            for p, (v_, x_, l_) in enumerate(nodes):
                v = Signal(name=f"arg0_{p}_valid")
                x = Signal(signed(sw), name=f"arg0_{p}_score")
                sc = Signal(signed(sc_w), name=f"arg0_{p}_scale")
                bi = Signal(signed(bi_w), name=f"arg0_{p}_bias")
                cls = [min(f * pe + p, classes - 1) for f in range(nf)]
                if nf == 1:
                    sel_sc, sel_bi = Const(scale[cls[0]], signed(sc_w)), Const(bias[cls[0]], signed(bi_w))
                else:
                    sel_sc = Array(Const(scale[c], signed(sc_w)) for c in cls)[fold]
                    sel_bi = Array(Const(bias[c], signed(bi_w)) for c in cls)[fold]
                m.d.sync += [v.eq(v_), x.eq(x_), sc.eq(sel_sc), bi.eq(sel_bi)]
                regs0.append((v, x, sc, bi, l_))
            side = delay(side, 0)
            for p, (v_, x_, sc, bi, l_) in enumerate(regs0):
                v, key = Signal(name=f"argk_{p}_valid"), Signal(signed(w), name=f"argk_{p}_key")
                x = Signal(unsigned(w), name=f"argk_{p}_val")
                m.d.comb += key.eq(x_ * sc + bi)
                m.d.sync += [v.eq(v_), x.eq(Cat(key[:-1], ~key[-1]))]
                leaves.append((v, x, l_))
            side = delay(side, "k")
        nodes = leaves
        level = 0

        while len(nodes) > 1:
            level += 1
            # Two register stages per level: the compare (one carry chain) of every pair, then
            # the select (a multiplexer), so neither shares a cycle with the other.
            pairs = []
            for j in range(0, len(nodes) - 1, 2):
                (va, xa, la), (vb, xb, lb) = nodes[j], nodes[j + 1]
                # The highest lane the pair can hold sets its lane fields' width.
                lane_w = max(1, (min((j // 2 + 1) << level, pe) - 1).bit_length())
                la, lb = la[:lane_w], lb[:lane_w]
                regs = [Signal(len(sig), name=f"arg{level}c_{j // 2}_{n}") for sig, n in
                        zip((va, xa, la, vb, xb, lb), ("va", "xa", "la", "vb", "xb", "lb"))]
                regs[1] = Signal(unsigned(w), name=f"arg{level}c_{j // 2}_xa")
                regs[4] = Signal(unsigned(w), name=f"arg{level}c_{j // 2}_xb")
                gt = Signal(name=f"arg{level}c_{j // 2}_gt")
                m.d.sync += [r.eq(sig) for r, sig in zip(regs, (va, xa, la, vb, xb, lb))]
                m.d.sync += gt.eq(xb > xa)
                pairs.append((*regs, gt))
            odd = None
            if len(nodes) % 2:
                odd = [Signal.like(sig, name=f"arg{level}c_pass_{n}")
                       for sig, n in zip(nodes[-1], ("valid", "val", "lane"))]
                m.d.sync += [r.eq(sig) for r, sig in zip(odd, nodes[-1])]
            side = delay(side, f"{level}c")
            nxt = []
            for k, (va, xa, la, vb, xb, lb, gt) in enumerate(pairs):
                take_b = vb & (~va | gt)
                v = Signal(name=f"arg{level}_{k}_valid")
                x = Signal(unsigned(w), name=f"arg{level}_{k}_val")
                # The highest lane this node can hold sets its lane field's width.
                top = min((k + 1) << level, pe) - 1
                lane = Signal(max(1, top.bit_length()), name=f"arg{level}_{k}_lane")
                m.d.sync += [v.eq(va | vb), x.eq(Mux(take_b, xb, xa)),
                             lane.eq(Mux(take_b, lb, la))]
                nxt.append((v, x, lane))
            if odd is not None:
                v, x = Signal(name=f"arg{level}_pass_valid"), Signal(unsigned(w), name=f"arg{level}_pass_val")
                lane = Signal(max(1, (pe - 1).bit_length()), name=f"arg{level}_pass_lane")
                m.d.sync += [v.eq(odd[0]), x.eq(odd[1]), lane.eq(odd[2])]
                nxt.append((v, x, lane))
            side = delay(side, level)
            nodes = nxt
        (c_valid, c_val, c_lane), (c_fire, c_first, c_last, c_base) = nodes[0], side

        # Running best over the image's beats (first beat: take it even if lower).  With one
        # beat per image (NF = 1) every beat is a first one: no compare with the running best.
        take = c_fire & c_valid if nf == 1 else c_fire & c_valid & (c_first | (c_val > best_val))
        with m.If(take):
            m.d.sync += [best_val.eq(c_val), best_idx.eq(c_base + c_lane)]
        with m.If(c_last):
            m.d.sync += have.eq(1)
        # Beats whose argmax is in flight block the next image until `have` is set.
        pending = Signal()                      # last beat accepted, its argmax not yet done
        with m.If(last_beat):
            m.d.sync += pending.eq(1)
        with m.Elif(c_last):
            m.d.sync += pending.eq(0)
        m.d.comb += self.i.ready.eq(~have & ~pending)
        with m.If(i_fire):
            for k in range(total - pe):
                m.d.sync += scores[k].eq(scores[k + pe])
            for p in range(pe):
                m.d.sync += scores[total - pe + p].eq(self.i.payload[p])
            with m.If(fold == nf - 1):
                m.d.sync += [fold.eq(0), base.eq(0)]
            with m.Else():
                m.d.sync += [fold.eq(fold + 1), base.eq(base + pe)]

        # Emit: beat 0 = class index, then score0, score1, ... shifted out of entry 0, into
        # the register slice in front of `o`.  `at_first`/`at_last` mirror out_beat == 0 /
        # == classes as flip-flops, so the handshake logic (valid, last, the transfer
        # below) decodes no counter.
        m.submodules.out_slice = out_slice = RegisterSlice(self.o.payload.shape())
        wiring.connect(m, out_slice.o, wiring.flipped(self.o))
        emit = out_slice.i
        at_first, at_last = Signal(init=1), Signal()
        emit_fire = Signal()
        m.d.comb += [
            emit.valid.eq(emitting),
            emit.payload.last.eq(at_last),
            emit_fire.eq(emit.valid & emit.ready),
        ]
        with m.If(at_first):
            m.d.comb += emit.payload.data.eq(out_class)
        with m.Else():
            m.d.comb += emit.payload.data.eq(out_scores[0])
        with m.If(emit_fire):
            with m.If(~at_first):
                for k in range(classes - 1):
                    m.d.sync += out_scores[k].eq(out_scores[k + 1])
            with m.If(at_last):
                m.d.sync += [emitting.eq(0), out_beat.eq(0), at_first.eq(1), at_last.eq(0)]
            with m.Else():
                m.d.sync += [out_beat.eq(out_beat + 1), at_first.eq(0),
                             at_last.eq(out_beat == classes - 1)]

        # Transfer a complete image to the emitter when it is (becoming) idle.
        with m.If(have & (~emitting | (emit_fire & at_last))):
            m.d.sync += [have.eq(0), emitting.eq(1), out_beat.eq(0), at_first.eq(1),
                         at_last.eq(0), out_class.eq(best_idx)]
            m.d.sync += [out_scores[k].eq(scores[k]) for k in range(classes)]
        return m


class SerializerTiming:
    """Cycle-exact model of :class:`OutputSerializer` (collect ``NF`` beats, argmax pipeline of
    ``argmax_latency`` cycles, hand over to the emit registers when they are idle or finishing,
    emit ``1 + C`` beats through the output register slice), stage-model interface of
    :mod:`hw.cycle_model`."""

    def __init__(self, classes: int, neuron_folds: int, argmax_latency: int):
        if argmax_latency < 1:
            raise ValueError(f"argmax_latency must be >= 1, not {argmax_latency!r}")
        self.nf, self.beats, self.latency = neuron_folds, 1 + classes, argmax_latency
        self.have = False
        self.flight = 0          # cycles until the last beat's argmax completes (then `have`)
        self.emitting = False
        self.fold = 0
        self.out_beat = 0
        self.out_slice = RegisterSliceTiming()

    def valid(self):
        return self.out_slice.valid()

    def ready(self, down_ready):
        return not self.have and not self.flight

    def step(self, in_fire, out_fire, cycle, in_valid=True):
        emit_fire = self.emitting and self.out_slice.ready()
        self.out_slice.step(emit_fire, out_fire)
        last_out = emit_fire and self.out_beat == self.beats - 1
        transfer = self.have and (not self.emitting or last_out)
        if self.flight:
            self.flight -= 1
            if not self.flight:
                self.have = True
        if in_fire:
            if self.fold == self.nf - 1:
                self.fold, self.flight = 0, self.latency
            else:
                self.fold += 1
        if emit_fire:
            if last_out:
                self.emitting, self.out_beat = False, 0
            else:
                self.out_beat += 1
        if transfer:
            self.have, self.emitting, self.out_beat = False, True, 0
