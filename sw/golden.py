"""Golden integer reference model of a compiled network (numpy only, bit-exact).

:class:`GoldenModel` executes docs/compiled-network.md literally: thermometer bits from
the integer thresholds, binary dot products, per-neuron integer thresholds with ``neg``
flags, and for 2-bit inputs the MSB dot product, the gate ``acc_m > G`` and the LSB dot
product added only where the gate fires.  It is the reference the PyTorch model (export
checks) and the hardware (co-simulation) are compared with.

The dot products are computed as matrix products of ±1 values in float32 (float64 for
very wide layers) through BLAS, which is **exact**: every operand, product and partial
sum is an integer below ``2**24`` (``2**53``) in magnitude, so no rounding can happen
whatever the summation order.  A 2-bit input is fed as the single value ``B*m + l``
(``B`` a power of two ``> 2*MW``), so one product yields ``B*acc_m + acc_l``, from which
``acc_m`` and ``acc_l`` decode exactly.  A layer too wide for that falls back to the
XNOR-popcount kernel on packed 64-bit words (:mod:`sw.bitpack`), which is also kept as
the reference path (:func:`_reference_run`) the fast path is tested against.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

import numpy as np

from .bitpack import pack_bits, xnor_popcount_dot
from .compiled_net import CompiledNetwork, LayerSpec
from .errors import UserError

__all__ = ["GoldenResult", "GoldenModel", "thermometer_bits", "conv_windows", "max_pool",
           "exit_margins", "take_exits"]

# Images pushed through all layers at once; bounds the per-layer temporaries.
_IMAGE_CHUNK = 1024
# Convolution input vectors (windows) handled at once by the XNOR-popcount path.
_WINDOW_CHUNK = 1 << 16
# Input vectors per matrix product in the float path: bounds the im2col buffer
# (rows * MW * 4 bytes) and keeps it and the post-processing temporaries in cache
# (measured: 1024-4096 are equally fast, 16384 is 1.5x slower).
_ROW_CHUNK = 2048
# OpenBLAS threads for the matrix products while the environment does not choose
# (OPENBLAS_NUM_THREADS / OMP_NUM_THREADS unset); None leaves numpy's setting alone.  The
# products are small and interleaved with single-threaded numpy work, during which
# OpenBLAS's idle workers spin: on the shared 2-core development machine numpy's default
# (2 threads) made the golden model 2.5x slower than one thread.
_BLAS_THREADS: int | None = 1
_THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
# Float types and the magnitude below which they hold every integer exactly.
_EXACT_FLOATS = ((np.float32, 1 << 24), (np.float64, 1 << 53))


@dataclass(eq=False)
class GoldenResult:
    """Outputs of :meth:`GoldenModel.run` for ``N`` images.

    Attributes
    ----------
    classes
        ``int64 (N,)`` predicted class (the output's decoder: by default the smallest index
        among the maximal scores).
    scores
        ``int64 (N, classes)`` the last layer's outputs: integer accumulators (``scores``),
        or activation codes of a thresholded last layer.
    layer_outputs
        Per layer ``(N, out_size)``: ``uint8`` bits 0/1 (sign), ``uint8`` codes q in
        0..levels-1 (frac2, multithreshold), ``int64`` scores (a scores last layer); a convolution layer's output feature map
        (after its max-pool) flattened in HWC order.
    gates
        Per layer ``bool (N, V*MH)`` gate decisions ``acc_m > G`` (2-bit inputs) or
        ``None``; ``V`` = input vectors per image (output positions of a convolution,
        position-major: entry ``v*MH + n``), 1 for a dense layer.
    lsb_fraction
        Per layer the fraction of (image, neuron) pairs whose gate fired, or ``None``.
    exits
        ``int64 (N,)`` the exit each image takes: ``j`` for early exit ``j`` (the first
        whose margin reaches its threshold), ``E = len(net.exits)`` for the last layer; all
        ``0`` for a network without exits.  ``classes`` and ``scores`` are that exit's.
    exit_scores
        Per early exit ``int64 (N, classes)`` its classifier's scores, computed for every
        image (whichever exit it takes); empty without exits.
    final_classes
        ``int64 (N,)`` the last layer's class of every image (``classes`` without exits).
    exit_gates
        Per early exit its classifier's gates ``bool (N, classes)`` (after a frac2 layer) or
        ``None``.
    tensors
        Residual networks (format version 4, :mod:`sw.residual_golden`): every graph tensor
        but the image by name, ``(N, *shape)`` (the per-node taps); empty for chains.  There
        ``layer_outputs``/``gates`` are the binary convolutions' accumulators and gates.
    """

    classes: np.ndarray
    scores: np.ndarray
    layer_outputs: list[np.ndarray]
    gates: list[np.ndarray | None]
    lsb_fraction: list[float | None]
    exits: np.ndarray | None = None
    exit_scores: list[np.ndarray] = field(default_factory=list)
    final_classes: np.ndarray | None = None
    exit_gates: list[np.ndarray | None] = field(default_factory=list)
    tensors: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.exits is None:
            self.exits = np.zeros(self.classes.shape, np.int64)
        if self.final_classes is None:
            self.final_classes = self.classes

    def accuracy(self, labels: np.ndarray) -> float:
        """Fraction of images whose predicted class equals ``labels``."""
        labels = np.asarray(labels)
        if labels.shape != self.classes.shape:
            raise UserError(f"labels must be {self.classes.shape}, got {labels.shape}")
        return float(np.mean(self.classes == labels)) if labels.size else 0.0


@contextlib.contextmanager
def _blas_threads(threads: int | None):
    """Run the block with the BLAS limited to ``threads`` threads (threadpoolctl; restored
    afterwards), unless ``threads`` is None or the environment sets the thread count.  The
    limit is process-wide while the block runs."""
    if threads is None or any(os.environ.get(v) for v in _THREAD_ENV):
        yield
        return
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=threads, user_api="blas"):
        yield


def _window_view(x: np.ndarray, conv) -> np.ndarray:
    """Windows of an already padded map ``(N, Hp, Wp, C)`` as a view ``(N, OH, OW, K, K, C)``."""
    k, s = conv.kernel, conv.stride
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))
    win = win[:, ::s, ::s][:, :conv.out_height, :conv.out_width]   # (N, OH, OW, C, K, K)
    return win.transpose(0, 1, 2, 4, 5, 3)                          # (N, OH, OW, K, K, C)


def conv_windows(x: np.ndarray, conv) -> np.ndarray:
    """Input vectors of a convolution: ``x`` ``(N, H, W, C)`` 0/1 bits (one plane) ->
    ``(N, OH*OW, K*K*C)`` uint8, padded with 0 bits, window order (ky, kx, c).

    # Ref: docs/compiled-network.md "Convolution" (the window generator's beat order).
    """
    p = conv.pad
    if p:
        x = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    return _window_view(x, conv).reshape(x.shape[0], conv.positions, conv.window)


def max_pool(q: np.ndarray, size: int) -> np.ndarray:
    """``size x size`` stride-``size`` max-pool (floor mode) of codes ``(N, H, W, C)``."""
    n, h, w, c = q.shape
    oh, ow = h // size, w // size
    q = q[:, :oh * size, :ow * size].reshape(n, oh, size, ow, size, c)
    return q.max(axis=(2, 4))


def _max_pool_values(a: np.ndarray, size: int) -> np.ndarray:
    """:func:`max_pool` of ``(N, H, W, C)`` values, as ``size*size - 1`` strided maxima."""
    oh, ow = a.shape[1] // size * size, a.shape[2] // size * size
    out = a[:, 0:oh:size, 0:ow:size].copy()
    for dy in range(size):
        for dx in range(size):
            if dy or dx:
                np.maximum(out, a[:, dy:oh:size, dx:ow:size], out=out)
    return out


def thermometer_bits(images: np.ndarray, thresholds: tuple[int, ...]) -> np.ndarray:
    """Input bits ``(N, P*T)`` uint8: bit ``p*T + k = (pixel_p >= t_k)`` (pixel-major)."""
    th = np.asarray(thresholds, dtype=np.int64)
    bits = images[:, :, None].astype(np.int64) >= th[None, None, :]
    return bits.reshape(images.shape[0], -1).astype(np.uint8)


class _Layer:
    """One layer prepared for the exact float matrix product (and the XNOR-popcount path).

    ``forward`` maps the layer's input codes (``(N, H, W, C)`` map for a convolution,
    ``(N, MW)`` for a dense layer; bits, or frac2 codes q for 2-bit inputs) to its output
    ``(N, out_size)`` (codes after the max-pool, or int64 scores) and its gates
    ``(N, V*MH)`` (2-bit inputs) or ``None``.
    """

    def __init__(self, layer: LayerSpec):
        self.spec = layer
        self._w_packed: np.ndarray | None = None
        mw = layer.in_features
        two_bit = layer.gated
        # Gated 2-bit inputs enter as B*m + l: the product is B*acc_m + acc_l with
        # |acc_l| <= MW < B/2.  Ungated 2-bit inputs enter as their value u = 2q - 3.
        self.base = 1 << (2 * mw).bit_length() if two_bit else 0
        self.offset = 3 if layer.in_bits == 2 else 1
        # Bounds |partial sums| (MW*(B+1)) and |compared constants| (gates B*(G+1) - MW).
        bound = (mw + 1) * (self.base + 1) if two_bit else (mw + 1) * self.offset
        self.dtype = next((dt for dt, top in _EXACT_FLOATS if bound < top), None)
        if self.dtype is None:          # absurdly wide: XNOR-popcount only
            return
        dt = self.dtype
        if two_bit:
            b = self.base
            g = layer.gates.astype(np.int64)
            # acc_m > G  <=>  B*acc_m + acc_l >= B*(G+1) - MW   (since |acc_l| <= MW < B/2)
            self.gate_value = (b * (g + 1) - mw).astype(dt)
            self.sign = (None if layer.thresholds is None else
                         np.where(layer.neg, -1, 1).astype(dt))
            # x + round_b has ulp B for |x| < 2**(nmant-1) * B (nmant = 23 for float32),
            # which holds: |x| <= bound < 2**(nmant+1) and B >= 4.
            self.round_b = dt(1.5 * 2.0 ** np.finfo(dt).nmant * b)
            # B*acc_m -> +-2*acc_m (2/B is a power of two, the sign +-1: exact)
            self.scale_m = (2 / b) * (np.ones(layer.out_features, dt) if self.sign is None
                                      else self.sign)
            weights = layer.weights
        else:
            # 1-bit: fold neg into the weights, so the product is already a = +-acc.
            weights = (layer.weights if layer.thresholds is None else
                       np.where(layer.neg[:, None], -layer.weights, layer.weights))
        self.w = np.ascontiguousarray(weights.T, dtype=dt)               # (MW, MH)
        self.thresholds = (None if layer.thresholds is None else
                           np.ascontiguousarray(layer.thresholds.T, dtype=dt))  # (count, MH)

    # ---------------------------------------------------------------- float path
    def forward(self, q: np.ndarray, out: np.ndarray | None = None,
                gate: np.ndarray | None = None):
        """Output and gates of input codes ``q``, written into ``out`` and ``gate`` where
        given (arrays of the right shape and dtype), else into new arrays."""
        layer = self.spec
        n, mh = q.shape[0], layer.out_features
        vec = layer.vectors_per_image
        if out is None:
            out = np.empty((n, layer.out_size),
                           np.int64 if layer.out == "scores" else np.uint8)
        if gate is None and layer.gated:
            gate = np.empty((n, vec * mh), bool)
        if self.dtype is None:
            ref_out, ref_gate = self.reference_forward(q)
            out[...] = ref_out
            if gate is not None:
                gate[...] = ref_gate
            return out, gate
        per = max(1, _ROW_CHUNK // vec)
        # Buffers reused by every chunk (fresh large arrays would be page-faulted in each time).
        cols = np.empty((min(n, per) * vec, layer.in_features), self.dtype)
        val = np.empty((cols.shape[0], mh), self.dtype)
        for s in range(0, n, per):
            e = min(n, s + per)
            rows = (e - s) * vec
            self._columns(q[s:e], cols[:rows])
            np.matmul(cols[:rows], self.w, out=val[:rows])
            a = self._signed_acc(val[:rows], None if gate is None else
                                 gate[s:e].reshape(rows, mh))
            if self.thresholds is None:
                out[s:e] = a.reshape(e - s, -1)            # scores (exact integers)
                continue
            if layer.pool:
                # The codes are a non-decreasing function of a (neg is folded into a), so
                # the max-pool of the codes is the code of the max-pool of a.
                a = _max_pool_values(a.reshape(e - s, layer.conv.out_height,
                                               layer.conv.out_width, mh), layer.pool)
            out[s:e] = self._codes(a).reshape(e - s, -1)
        return out, gate

    def _values(self, q: np.ndarray) -> np.ndarray:
        """Codes -> input values: +-1 (1-bit), u = 2q - 3 (ungated 2-bit) or B*m + l (gated
        2-bit: q = 2*m_bit + l_bit)."""
        if self.base == 0:
            x = q.astype(self.dtype)
            x *= 2
            x -= self.offset
            return x
        # B*m + l = B*(2*m_bit - 1) + 2*l_bit - 1 = (2B - 4)*m_bit + 2*q - (B + 1), in the
        # narrowest integer type that holds it (cheaper than a table lookup), then float.
        b = self.base
        v = (q >> 1).astype(np.int16 if 2 * b < 1 << 15 else np.int64)
        v *= 2 * b - 4
        v += q
        v += q
        v -= b + 1
        return v.astype(self.dtype)

    def _columns(self, q: np.ndarray, cols: np.ndarray) -> None:
        """Input vectors of codes ``q`` (a chunk of images) into ``cols`` ``(rows, MW)`` as
        input values, windows in (ky, kx, c) order."""
        conv = self.spec.conv
        if conv is None:
            cols[...] = self._values(q)
            return
        p = conv.pad
        if p:   # padding pixels have every bit 0: code 0
            q = np.pad(q, ((0, 0), (p, p), (p, p), (0, 0)))
        x = self._values(q)
        if conv.kernel == 1 and conv.stride == 1:
            cols[...] = x.reshape(cols.shape)
        else:
            np.copyto(cols.reshape(q.shape[0], conv.out_height, conv.out_width, conv.kernel,
                                   conv.kernel, conv.in_channels), _window_view(x, conv))

    def _signed_acc(self, val: np.ndarray, gate: np.ndarray | None) -> np.ndarray:
        """Products ``(rows, MH)`` -> ``a = -acc`` (``neg`` neurons) or ``acc``, exact
        integers in the float type (overwrites ``val``); fills ``gate`` for 2-bit inputs."""
        if gate is None:
            return val                                     # neg already in the weights
        np.greater_equal(val, self.gate_value, out=gate)
        # B*acc_m: val rounded to a multiple of B by adding and subtracting a constant whose
        # ulp is B (no ties: |acc_l| < B/2); every step is exact.
        a = val + self.round_b
        a -= self.round_b
        acc_l = np.subtract(val, a, out=val)
        acc_l *= gate                                      # LSB term only where the gate fires
        a *= self.scale_m                                  # +-2*acc_m (2/B, neg folded in)
        if self.sign is not None:
            acc_l *= self.sign
        a += acc_l                                         # +-(2*acc_m + gate*acc_l)
        return a

    def _codes(self, a: np.ndarray) -> np.ndarray:
        """Output codes ``sum_c [a >= T_c]`` (uint8) of signed accumulators ``a``."""
        th = self.thresholds
        q = np.greater_equal(a, th[0]).view(np.uint8)
        for c in range(1, th.shape[0]):
            q += np.greater_equal(a, th[c]).view(np.uint8)
        return q

    # ---------------------------------------------------------------- XNOR-popcount path
    @property
    def w_packed(self) -> np.ndarray:
        if self._w_packed is None:
            self._w_packed = pack_bits((self.spec.weights > 0).astype(np.uint8))
        return self._w_packed

    def dot(self, x_packed: np.ndarray) -> np.ndarray:
        return xnor_popcount_dot(x_packed, self.w_packed, self.spec.in_features)

    def reference_forward(self, q: np.ndarray):
        """``forward`` on packed bits with :func:`~sw.bitpack.xnor_popcount_dot` (int64)."""
        layer = self.spec
        n = q.shape[0]
        two_bit = layer.gated
        if layer.conv is None:
            acc, gate = self._reference_acc(q.reshape(n, -1), two_bit)
        else:
            vec = layer.conv.positions
            per = max(1, _WINDOW_CHUNK // vec)
            parts = [self._reference_acc(conv_windows(q[s:s + per], layer.conv)
                                         .reshape(-1, layer.in_features), two_bit)
                     for s in range(0, n, per)]
            acc = np.concatenate([a for a, _ in parts]).reshape(n, vec, -1)
            gate = (None if not two_bit else
                    np.concatenate([g for _, g in parts]).reshape(n, -1))
        if layer.out == "scores":
            return acc, gate
        a = np.where(layer.neg, -acc, acc)
        out = np.zeros(acc.shape, dtype=np.uint8)
        for c in range(layer.threshold_count):
            out += a >= layer.thresholds[:, c]
        if layer.conv is not None:
            out = out.reshape(n, layer.conv.out_height, layer.conv.out_width, -1)
            if layer.pool:
                out = max_pool(out, layer.pool)
        return out.reshape(n, -1), gate

    def _reference_acc(self, q: np.ndarray, two_bit: bool):
        """Accumulators (and gates) for input vectors ``q`` (R, MW) of codes."""
        if self.spec.in_bits == 2 and not two_bit:     # ungated: acc = dot(w, 2m + l)
            return 2 * self.dot(pack_bits(q >> 1)) + self.dot(pack_bits(q & 1)), None
        if not two_bit:
            return self.dot(pack_bits(q)), None
        # frac2: q = 2*m_bit + l_bit
        acc_m = self.dot(pack_bits(q >> 1))
        gate = acc_m > self.spec.gates[None, :]
        # The LSB term is added only where the gate fires.
        acc = 2 * acc_m + np.where(gate, self.dot(pack_bits(q & 1)), 0)
        return acc, gate


def exit_margins(scores: np.ndarray) -> np.ndarray:
    """``int64 (N,)`` best minus second-best score of each row of ``scores`` ``(N, C)``,
    ``C >= 2`` (0 when the two largest are equal).

    # Ref: docs/compiled-network.md "Early exits".
    """
    scores = np.asarray(scores, np.int64)
    top2 = np.partition(scores, scores.shape[1] - 2, axis=1)[:, -2:]
    return (top2[:, 1] - top2[:, 0]).astype(np.int64)


def take_exits(margins: list[np.ndarray], thresholds: list[int], n: int) -> np.ndarray:
    """The exit each of ``n`` images takes: the first ``j`` with ``margins[j] >= thresholds[j]``,
    else ``len(margins)`` (the last layer)."""
    taken = np.full(n, len(margins), np.int64)
    for j in reversed(range(len(margins))):
        taken[np.asarray(margins[j]) >= thresholds[j]] = j
    return taken


class GoldenModel:
    """Bit-exact integer model of a :class:`~sw.compiled_net.CompiledNetwork`.

    Parameters
    ----------
    net
        The compiled network (e.g. from :func:`sw.network_io.load_compiled_network`).
        Folding does not change results; only the unfolded arrays are used.
    """

    def __init__(self, net: CompiledNetwork):
        self._net = net
        self._graph = None
        if not isinstance(net, CompiledNetwork):    # a residual network (version 4)
            from .residual_golden import ResidualGolden
            self._graph = ResidualGolden(net)
            return
        self._layers = [_Layer(layer) for layer in net.layers]
        self._exits = [_Layer(ex.layer) for ex in net.exits]

    @property
    def net(self) -> CompiledNetwork:
        return self._net

    def _check_images(self, images) -> np.ndarray:
        images = np.asarray(images)
        p = self._net.input.pixels
        top = (1 << self._net.input.pixel_bits) - 1
        ok = images.ndim == 2 and images.shape[1] == p and (
            images.dtype == np.uint8 if top == 255 else np.issubdtype(images.dtype, np.integer))
        if ok and images.dtype != np.uint8 and images.size:
            ok = images.min() >= 0 and images.max() <= top
        if not ok:
            raise UserError(f"images must be (N, {p}) uint8 pixels, got "
                            f"{images.shape} {images.dtype}")
        return images

    def run(self, images: np.ndarray, *, progress: bool = False,
            taps: bool = True, gates: bool | None = None) -> GoldenResult:
        """Run ``images`` ``(N, P)`` uint8 through the network.

        A residual network runs its graph (:class:`sw.residual_golden.ResidualGolden`);
        ``taps=False`` keeps only classes, scores and LSB fractions there, ``gates=True``
        the gates too (chains ignore both).  Raises :class:`~sw.errors.UserError` on a wrong
        shape or dtype.
        """
        if self._graph is not None:
            return self._graph.run(self._check_images(images), taps=taps, gates=gates,
                                   progress=progress)
        return self._run(images, progress=progress, reference=False)

    def _run(self, images: np.ndarray, *, progress: bool, reference: bool) -> GoldenResult:
        images = self._check_images(images)
        n = images.shape[0]
        layer_outputs = [np.empty((n, layer.out_size),
                                  np.int64 if layer.out == "scores" else np.uint8)
                         for layer in self._net.layers]
        gate_arrays = [np.empty((n, layer.vectors_per_image * layer.out_features), bool)
                       if layer.gated else None for layer in self._net.layers]
        starts = range(0, n, _IMAGE_CHUNK)
        if progress:
            from .progress import progress_bar
            starts = progress_bar(starts, desc="golden", unit="chunk")
        with _blas_threads(_BLAS_THREADS):
            for start in starts:
                stop = min(n, start + _IMAGE_CHUNK)
                self._run_chunk(images[start:stop], reference,
                                [o[start:stop] for o in layer_outputs],
                                [None if g is None else g[start:stop] for g in gate_arrays])
        scores = layer_outputs[-1].astype(np.int64, copy=False)
        classes = self._net.output.decode(scores)
        lsb = [float(g.mean()) if g is not None and g.size else (None if g is None else 0.0)
               for g in gate_arrays]
        if not self._exits:
            return GoldenResult(classes, scores, layer_outputs, gate_arrays, lsb)
        outs = [self._exit_forward(pl, layer_outputs[ex.after], reference)
                for pl, ex in zip(self._exits, self._net.exits)]
        exit_scores = [o for o, _ in outs]
        taken = take_exits([exit_margins(s) for s in exit_scores],
                           [ex.margin for ex in self._net.exits], n)
        final_classes = classes
        scores = scores.copy()
        classes = classes.copy()
        for j, s in enumerate(exit_scores):
            rows = taken == j
            scores[rows] = s[rows]
            # Exits decode by the plain argmax (smallest index among the maximal scores).
            classes[rows] = np.argmax(s[rows], axis=1)
        return GoldenResult(classes, scores, layer_outputs, gate_arrays, lsb, taken,
                            exit_scores, final_classes, [g for _, g in outs])

    @staticmethod
    def _exit_forward(pl: _Layer, x: np.ndarray, reference: bool):
        """Scores ``(N, classes)`` int64 and gates (or ``None``) of exit classifier ``pl`` on
        layer outputs ``x``."""
        with _blas_threads(_BLAS_THREADS):
            out, gate = pl.reference_forward(x) if reference else pl.forward(x)
        return out.astype(np.int64, copy=False), gate

    def _run_chunk(self, images: np.ndarray, reference: bool, outs: list[np.ndarray],
                   gates: list[np.ndarray | None]) -> None:
        """Run a chunk of images, writing every layer's output and gates into ``outs`` and
        ``gates`` (the chunk's rows of the result arrays)."""
        n = images.shape[0]
        # The current activation as codes (N, out_size) in HWC order: bits or frac2 q.
        q = thermometer_bits(images, self._net.input.thresholds)
        shape = self._net.input.out_map
        for pl, out, gate in zip(self._layers, outs, gates):
            layer = pl.spec
            x = q.reshape(n, -1) if layer.conv is None else q.reshape(n, *shape)
            if reference:
                ref_out, ref_gate = pl.reference_forward(x)
                out[...] = ref_out
                if gate is not None:
                    gate[...] = ref_gate
            else:
                pl.forward(x, out, gate)
            q = out
            shape = layer.out_map


def _reference_run(net: CompiledNetwork, images: np.ndarray) -> GoldenResult:
    """:meth:`GoldenModel.run` on the XNOR-popcount path only (packed 64-bit words, int64
    accumulators, no floating point): the reference the float path is tested against."""
    return GoldenModel(net)._run(images, progress=False, reference=True)
