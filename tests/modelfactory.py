"""PyTorch models with random but exportable parameters, for export and golden-model tests."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["randomise_model"]


def randomise_model(model, seed: int = 0, *, mean_spread: str = "fixed"):
    """Give every layer of ``model`` (and its exit heads) random batch-norm statistics, affine
    parameters, activation biases and gate thresholds, and the score layers a fixed output
    norm, so that exported thresholds and gates are mixed rather than constant.

    ``mean_spread``: ``"fixed"`` draws BN means with standard deviation 4, ``"fan_in"`` with
    ``sqrt(in_features) / 2`` (and gate thresholds with ``sqrt(in_features)`` instead of 6),
    which keeps wide convolutions' outputs mixed.  Returns the model in eval mode.
    """
    torch.manual_seed(seed)
    with torch.no_grad():
        for layer in [*model.layers, *getattr(model, "exit_heads", [])]:
            scale = float(np.sqrt(layer.in_features)) if mean_spread == "fan_in" else None
            if layer.out == "scores":
                layer.norm.running_mean.fill_(1.5)
                layer.norm.running_var.fill_(50.0)
            else:
                layer.bn.running_mean.normal_(0, scale / 2 if scale else 4)
                layer.bn.running_var.uniform_(1, 40)
                layer.bn.weight.normal_(0, 1)
                layer.bn.bias.normal_(0, 0.5)
                layer.act_bias.normal_(0, 0.2)
            if layer.in_bits == 2:
                layer.gate_delta.normal_(0, scale if scale else 6)
    return model.eval()
