"""Training methods for binary networks: how each step's gradients are computed.

Every method trains the same :class:`~models.layers.BinaryNet` with the same optimiser (Adam,
the recipe's learning-rate schedule, latent weights clipped to [-1, 1] after every step) and
produces the same kind of checkpoint: the exporter, the golden model and the RTL do not care
how a network was trained.  ``method`` is a recipe key (``--method`` on the command line).

``bp`` (default)
    Backpropagation of the cross-entropy through the whole network, the sign of weights and
    activations differentiated with the clipped straight-through estimator (STE)
    ``d sign(x) / dx = [|x| <= 1]`` (frac2: ``3 [|t| <= 1]``).

``dfa`` (direct feedback alignment, Nøkland 2016)
    Each layer's input is detached from the previous layer, so no gradient flows between
    layers.  The last layer trains on the true gradient of the loss.  Hidden layer ``l`` (output
    ``y_l = sign(t_l)``, ``t_l`` its batch-normed pre-activation) receives
    ``dL/dy_l := B_l e`` with ``e = (softmax(logits) - onehot(y)) / batch`` (the gradient of
    the mean cross-entropy with respect to the logits) and a fixed random matrix ``B_l``; from
    there autograd applies the local derivatives: the STE of the activation (``dL/dt_l =
    B_l e * [|t_l| <= 1]``), batch norm, the accumulation (weights through the STE of
    ``sign(w)``).  For a convolution ``B_l`` projects to its whole output map (after the
    max-pool).

``drtp`` (direct random target projection, Frenkel et al. 2021)
    As ``dfa`` with the error ``e`` replaced by a projection of the target alone:
    ``dL/dy_l := B_l (-onehot(y)) / batch`` (``-onehot(y)`` is the sign-inverted target, the
    part of ``e`` known before the forward pass ends; ``B_l`` and ``-B_l`` are equally
    distributed, so the sign convention does not matter).  Each hidden layer's gradient is
    therefore computed as soon as its output exists, and its graph is freed before the next
    layer runs.  The last layer trains on the true gradient of the loss.

``selfbin`` (self-binarizing networks, Lahoud et al. 2019)
    Backpropagation through soft binarisation: weights ``tanh(s w)`` and activations
    ``tanh(s t)`` (frac2: ``sum_k tanh(s (t - c_k))`` over its three steps ``c_k``) with a
    slope ``s`` growing geometrically per step from 1 to ``slope_final`` over the first
    ``1 - exact_fraction`` of the steps.  The remaining ``exact_fraction`` of the steps run the
    exact binary forward pass (sign; batch norm's running statistics now see the binary
    network) with the derivative of ``tanh(slope_final x)`` as the surrogate gradient.  Batch
    norm followed by the sign is a comparison (Lahoud's "binary batch norm"), folded into
    integer thresholds by the exporter like every other network.

The feedback matrices are fixed: ``B_l`` has standard normal entries divided by
``sqrt(classes)``, shape ``(values of layer l's output, classes)``, drawn in layer order from a
``torch.Generator`` seeded with :func:`feedback_seed` of the recipe's seed (independent of the
weight initialisation and of the batch order).  They are held by the trainer, not stored in
checkpoints (rebuilt from the seed).  Under Adam the scale of ``B_l`` hardly matters.
"""

from __future__ import annotations

import hashlib
import math

import torch
import torch.nn.functional as F

from sw.errors import UserError

from .layers import BinaryNet

__all__ = ["METHODS", "SLOPE_FINAL", "EXACT_FRACTION", "check_recipe", "feedback_seed",
           "feedback_matrices", "selfbin_surrogate", "backward_step"]

#: The training methods, by recipe name.
METHODS = ("bp", "dfa", "drtp", "selfbin")
#: Default last slope of the self-binarizing ``tanh(s x)``.
SLOPE_FINAL = 10.0
#: Default fraction of the steps that self-binarizing training runs with the exact sign.
EXACT_FRACTION = 0.25

_DOC = 'docs/models.md, "Training methods"'


def check_recipe(recipe: dict, prefix: str = "") -> None:
    """Raise :class:`UserError` (one line, naming ``prefix + key`` and the fix) unless the
    recipe's ``method``, ``slope_final`` and ``exact_fraction`` (where present) are valid."""
    method = recipe.get("method", "bp")
    if method not in METHODS:
        raise UserError(f"{prefix}method {method!r} is not a training method; choose one of "
                        f"{', '.join(METHODS)} ({_DOC})")
    slope = recipe.get("slope_final", SLOPE_FINAL)
    if isinstance(slope, bool) or not isinstance(slope, (int, float)) \
            or not (math.isfinite(slope) and slope >= 1):
        raise UserError(f"{prefix}slope_final must be a number >= 1 (the last slope of "
                        f"tanh(s x)), not {slope!r}")
    frac = recipe.get("exact_fraction", EXACT_FRACTION)
    if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 < frac <= 1:
        raise UserError(f"{prefix}exact_fraction must be in (0, 1] (the fraction of the steps "
                        f"trained with the exact sign), not {frac!r}")


def feedback_seed(seed: int) -> int:
    """The seed of the feedback matrices: the first 63 bits of SHA-256 of ``feedback:<seed>``
    (a stream unrelated to ``torch.manual_seed(seed)`` and to the batch-order generator)."""
    digest = hashlib.sha256(f"feedback:{int(seed)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


def feedback_matrices(model: BinaryNet, seed: int) -> list[torch.Tensor]:
    """Fixed random ``B_l`` for every hidden layer (all layers but the last), float32
    ``(output values of layer l, classes)``, entries ``N(0, 1) / sqrt(classes)``; deterministic
    in ``seed`` and the architecture."""
    gen = torch.Generator().manual_seed(feedback_seed(seed))
    classes = model.classes
    return [torch.randn(size, classes, generator=gen) / math.sqrt(classes)
            for size in model.output_sizes()[:-1]]


def selfbin_surrogate(step: int, total_steps: int, slope_final: float = SLOPE_FINAL,
                      exact_fraction: float = EXACT_FRACTION) -> tuple[float, bool]:
    """``(slope, exact)`` of self-binarizing training at optimiser ``step`` (0-based).

    The first ``soft = round(total_steps * (1 - exact_fraction))`` steps use the soft
    ``tanh(s x)`` with ``s = slope_final ** (step / soft)`` (1 at step 0); every later step
    the exact sign with the derivative of ``tanh(slope_final x)``.
    """
    soft = int(round(total_steps * (1.0 - exact_fraction)))
    if step >= soft:
        return float(slope_final), True
    return float(slope_final) ** (step / soft), False


def _ce_and_penalty(model: BinaryNet, logits: torch.Tensor, y: torch.Tensor,
                    gate_lambda: float) -> torch.Tensor:
    loss = F.cross_entropy(logits, y)
    if gate_lambda and model.gated_layers():
        loss = loss + gate_lambda * model.gate_penalty()
    return loss


def backward_step(model: BinaryNet, method: str, x: torch.Tensor, y: torch.Tensor,
                  feedback: list[torch.Tensor] | None = None,
                  gate_lambda: float = 0.0,
                  exit_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass of ``x`` (uint8 pixels) and the method's gradients into ``.grad``.

    The caller zeroes the gradients before and steps the optimiser after (and sets the
    ``selfbin`` surrogate with :meth:`BinaryNet.set_surrogate`: for this function ``selfbin``
    is backpropagation).  The model must be in training mode.

    Parameters
    ----------
    method
        One of :data:`METHODS`.
    feedback
        :func:`feedback_matrices` of the model (``dfa``, ``drtp``).
    gate_lambda
        Weight of the gate sparsity penalty (gated nets): added to the loss for every method
        (its gradient reaches only each layer's ``gate_delta``, a local term).
    exit_weight
        Networks with early exits (``bp``, ``selfbin``): the joint loss adds this weight times
        each exit's cross-entropy to the last layer's.

    Returns
    -------
    loss : Tensor
        The loss (cross-entropy plus the gate penalty), detached.
    logits : Tensor
        ``(B, classes)``, detached.
    """
    if method in ("bp", "selfbin"):
        if model.exit_heads:
            *early, logits = model.forward_exits(x)
            loss = _ce_and_penalty(model, logits, y, gate_lambda)
            for head_logits in early:
                loss = loss + exit_weight * F.cross_entropy(head_logits, y)
        else:
            logits = model(x)
            loss = _ce_and_penalty(model, logits, y, gate_lambda)
        loss.backward()
        return loss.detach(), logits.detach()
    if method not in ("dfa", "drtp"):
        raise UserError(f"method {method!r} is not a training method; choose one of "
                        f"{', '.join(METHODS)} ({_DOC})")
    if model.exit_heads:
        raise UserError(f"networks with early exits train with --method bp or selfbin, not "
                        f"{method} (the exit heads need the joint loss's gradients)")
    if feedback is None or len(feedback) != len(model.layers) - 1:
        raise ValueError(f"{method} needs one feedback matrix per hidden layer "
                         f"({len(model.layers) - 1}); see feedback_matrices")
    batch = y.shape[0]
    onehot = F.one_hot(y, model.classes).to(torch.float32)
    h = model.encode(x)
    hidden = []
    for index in range(len(model.layers) - 1):
        out = model.apply_layer(index, h)
        if method == "drtp":
            # The signal needs only the target: this layer's gradient now, its graph freed.
            signal = (-onehot / batch) @ feedback[index].t()
            out.backward(signal.reshape(out.shape))
        else:
            hidden.append(out)
        h = out.detach()
    logits = model.apply_layer(len(model.layers) - 1, h)
    loss = _ce_and_penalty(model, logits, y, gate_lambda)
    if method == "drtp":
        loss.backward()
        return loss.detach(), logits.detach()
    error = (torch.softmax(logits.detach(), dim=1) - onehot) / batch  # d mean-CE / d logits
    surrogate = loss
    for out, b in zip(hidden, feedback):
        surrogate = surrogate + (out * (error @ b.t()).reshape(out.shape)).sum()
    surrogate.backward()
    return loss.detach(), logits.detach()
