"""Golden integer reference model of a compiled network (numpy only, bit-exact).

:class:`GoldenModel` executes docs/compiled-network.md literally: thermometer bits from
the integer thresholds, XNOR-popcount dot products on packed bits
(:mod:`sw.bitpack`), per-neuron integer thresholds with ``neg`` flags, and for 2-bit
inputs the MSB dot product, the gate ``acc_m > G`` and the LSB dot product added only
where the gate fires.  No floating point is used anywhere.  It is the reference the
PyTorch model (export checks) and the hardware (co-simulation) are compared with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bitpack import pack_bits, xnor_popcount_dot
from .compiled_net import CompiledNetwork, LayerSpec
from .errors import UserError

__all__ = ["GoldenResult", "GoldenModel", "thermometer_bits", "conv_windows", "max_pool"]

# Images pushed through all layers at once; bounds the per-layer temporaries.
_IMAGE_CHUNK = 1024
# Convolution input vectors (windows) handled at once; bounds the im2col temporaries.
_WINDOW_CHUNK = 1 << 16


@dataclass(eq=False)
class GoldenResult:
    """Outputs of :meth:`GoldenModel.run` for ``N`` images.

    Attributes
    ----------
    classes
        ``int64 (N,)`` predicted class: the smallest index among the maximal scores.
    scores
        ``int64 (N, classes)`` integer accumulators of the last layer.
    layer_outputs
        Per layer ``(N, out_size)``: ``uint8`` bits 0/1 (sign), ``uint8`` codes q in 0..3
        (frac2), ``int64`` scores (last layer); a convolution layer's output feature map
        (after its max-pool) flattened in HWC order.
    gates
        Per layer ``bool (N, V*MH)`` gate decisions ``acc_m > G`` (2-bit inputs) or
        ``None``; ``V`` = input vectors per image (output positions of a convolution,
        position-major: entry ``v*MH + n``), 1 for a dense layer.
    lsb_fraction
        Per layer the fraction of (image, neuron) pairs whose gate fired, or ``None``.
    """

    classes: np.ndarray
    scores: np.ndarray
    layer_outputs: list[np.ndarray]
    gates: list[np.ndarray | None]
    lsb_fraction: list[float | None]

    def accuracy(self, labels: np.ndarray) -> float:
        """Fraction of images whose predicted class equals ``labels``."""
        labels = np.asarray(labels)
        if labels.shape != self.classes.shape:
            raise UserError(f"labels must be {self.classes.shape}, got {labels.shape}")
        return float(np.mean(self.classes == labels)) if labels.size else 0.0


def conv_windows(x: np.ndarray, conv) -> np.ndarray:
    """Input vectors of a convolution: ``x`` ``(N, H, W, C)`` 0/1 bits (one plane) ->
    ``(N, OH*OW, K*K*C)`` uint8, padded with 0 bits, window order (ky, kx, c).

    # Ref: docs/compiled-network.md "Convolution" (the window generator's beat order).
    """
    k, s, p = conv.kernel, conv.stride, conv.pad
    if p:
        x = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))
    win = win[:, ::s, ::s][:, :conv.out_height, :conv.out_width]   # (N, OH, OW, C, K, K)
    win = win.transpose(0, 1, 2, 4, 5, 3)                          # (N, OH, OW, K, K, C)
    return win.reshape(x.shape[0], conv.positions, conv.window)


def max_pool(q: np.ndarray, size: int) -> np.ndarray:
    """``size x size`` stride-``size`` max-pool (floor mode) of codes ``(N, H, W, C)``."""
    n, h, w, c = q.shape
    oh, ow = h // size, w // size
    q = q[:, :oh * size, :ow * size].reshape(n, oh, size, ow, size, c)
    return q.max(axis=(2, 4))


def thermometer_bits(images: np.ndarray, thresholds: tuple[int, ...]) -> np.ndarray:
    """Input bits ``(N, P*T)`` uint8: bit ``p*T + k = (pixel_p >= t_k)`` (pixel-major)."""
    th = np.asarray(thresholds, dtype=np.int64)
    bits = images[:, :, None].astype(np.int64) >= th[None, None, :]
    return bits.reshape(images.shape[0], -1).astype(np.uint8)


class _PackedLayer:
    """A layer's weights packed once for the XNOR-popcount kernel."""

    def __init__(self, layer: LayerSpec):
        self.spec = layer
        self.w_packed = pack_bits((layer.weights > 0).astype(np.uint8))

    def dot(self, x_packed: np.ndarray) -> np.ndarray:
        return xnor_popcount_dot(x_packed, self.w_packed, self.spec.in_features)


class GoldenModel:
    """Bit-exact integer model of a :class:`~sw.compiled_net.CompiledNetwork`.

    Parameters
    ----------
    net
        The compiled network (e.g. from :func:`sw.compiled_net.load_compiled_network`).
        Folding does not change results; only the unfolded arrays are used.
    """

    def __init__(self, net: CompiledNetwork):
        self._net = net
        self._layers = [_PackedLayer(layer) for layer in net.layers]

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

    def run(self, images: np.ndarray, *, progress: bool = False) -> GoldenResult:
        """Run ``images`` ``(N, P)`` uint8 through the network.

        Raises :class:`~sw.errors.UserError` on a wrong shape or dtype.
        """
        images = self._check_images(images)
        n = images.shape[0]
        outs: list[list[np.ndarray]] = [[] for _ in self._layers]
        gates: list[list[np.ndarray]] = [[] for _ in self._layers]
        starts = range(0, n, _IMAGE_CHUNK)
        if progress:
            from tqdm import tqdm
            starts = tqdm(starts, desc="golden", unit="chunk", leave=False)
        for start in starts:
            out_c, gate_c = self._run_chunk(images[start:start + _IMAGE_CHUNK])
            for i, (o, g) in enumerate(zip(out_c, gate_c)):
                outs[i].append(o)
                gates[i].append(g)
        layer_outputs = []
        gate_arrays: list[np.ndarray | None] = []
        for i, layer in enumerate(self._net.layers):
            dtype = np.int64 if layer.out == "scores" else np.uint8
            layer_outputs.append(np.concatenate(outs[i]).astype(dtype, copy=False) if n else
                                 np.zeros((0, layer.out_size), dtype=dtype))
            if layer.in_bits == 2:
                gate_arrays.append(np.concatenate(gates[i]) if n else np.zeros(
                    (0, layer.vectors_per_image * layer.out_features), dtype=bool))
            else:
                gate_arrays.append(None)
        scores = layer_outputs[-1]
        # argmax returns the first maximum: the smallest index among ties.
        classes = np.argmax(scores, axis=1).astype(np.int64) if n else np.zeros(0, np.int64)
        lsb = [float(g.mean()) if g is not None and g.size else (None if g is None else 0.0)
               for g in gate_arrays]
        return GoldenResult(classes, scores, layer_outputs, gate_arrays, lsb)

    def _run_chunk(self, images: np.ndarray):
        n = images.shape[0]
        # The current activation as codes (N, out_size) in HWC order: bits or frac2 q.
        q = thermometer_bits(images, self._net.input.thresholds)
        shape = self._net.input.out_map
        two_bit = False
        outs, gates = [], []
        for pl in self._layers:
            layer = pl.spec
            if layer.conv is None:
                acc, gate = self._layer_acc(pl, q.reshape(n, -1), two_bit)
            else:
                x = q.reshape(n, *shape)
                vec = layer.conv.positions
                per = max(1, _WINDOW_CHUNK // vec)
                parts = [self._layer_acc(pl, conv_windows(x[s:s + per], layer.conv)
                                         .reshape(-1, layer.in_features), two_bit)
                         for s in range(0, n, per)]
                acc = np.concatenate([a for a, _ in parts]).reshape(n, vec, -1)
                gate = (None if not two_bit else
                        np.concatenate([g for _, g in parts]).reshape(n, -1))
            gates.append(gate)
            if layer.out == "scores":
                outs.append(acc)
                continue
            a = np.where(layer.neg, -acc, acc)
            q = np.zeros(acc.shape, dtype=np.uint8)
            for c in range(layer.threshold_count):
                q += a >= layer.thresholds[:, c]
            if layer.conv is not None:
                q = q.reshape(n, layer.conv.out_height, layer.conv.out_width, -1)
                if layer.pool:
                    q = max_pool(q, layer.pool)
                q = q.reshape(n, -1)
            shape = layer.out_map
            outs.append(q)
            two_bit = layer.out == "frac2"
        return outs, gates

    @staticmethod
    def _layer_acc(pl: _PackedLayer, q: np.ndarray, two_bit: bool):
        """Accumulators (and gates) of one layer for input vectors ``q`` (R, MW) of codes."""
        layer = pl.spec
        if not two_bit:
            return pl.dot(pack_bits(q)), None
        # frac2: q = 2*m_bit + l_bit
        acc_m = pl.dot(pack_bits(q >> 1))
        gate = acc_m > layer.gates[None, :]
        # The LSB term is added only where the gate fires.
        acc = 2 * acc_m + np.where(gate, pl.dot(pack_bits(q & 1)), 0)
        return acc, gate
