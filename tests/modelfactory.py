"""PyTorch models with random but exportable parameters, for export and golden-model tests."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["randomise_model", "resnet_images", "train_resnet_briefly"]


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


def resnet_images(model, n: int, seed: int = 0) -> np.ndarray:
    """Random 8-bit images for ``model``'s input shape with smooth structure (so binarised
    maps are not pure noise), ``(n, P)`` HWC-flattened."""
    rng = np.random.default_rng(seed)
    c, h, w = model.input_shape
    base = rng.integers(0, 256, size=(n, 1, 1, c))
    ramp = (np.arange(h)[None, :, None, None] * rng.integers(-12, 13, size=(n, 1, 1, 1))
            + np.arange(w)[None, None, :, None] * rng.integers(-12, 13, size=(n, 1, 1, 1)))
    noise = rng.integers(-40, 41, size=(n, h, w, c))
    img = np.clip(base + ramp + noise, 0, 255)
    return img.reshape(n, -1).astype(np.uint8)


def train_resnet_briefly(model, images, steps: int, split: int):
    """A few Adam steps (batch 16, lr 1e-2) of a ResNet on a synthetic task (label: is the
    mean of the first ``split`` pixels above that of the rest), so batch-norm statistics and
    RPReLU parameters move off their initial values.  Returns the model in eval mode."""
    from models.layers import clip_latent_weights
    images = torch.as_tensor(images)
    n = images.shape[0]
    labels = (images[:, :split].float().mean(1) > images[:, split:].float().mean(1)).long()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(steps):
        idx = torch.arange(step * 16, step * 16 + 16) % n
        loss = torch.nn.functional.cross_entropy(model(images[idx]), labels[idx])
        if model.activation == "frac2":
            loss = loss + 0.05 * model.gate_penalty()
        opt.zero_grad()
        loss.backward()
        opt.step()
        clip_latent_weights(model)
    return model.eval()
