r"""A sigmoid multilayer perceptron classifier initialised from pretrained RBMs (§20.3, §20.4.5).

Discriminative fine-tuning of a DBN (Hinton & Salakhutdinov 2006) or a DBM (Salakhutdinov &
Hinton 2009): the hidden layer ``l`` computes ``x_{l+1} = σ(x_l W_l + c_l)``, which is the
up-pass (recognition) of the pretrained model when ``(W_l, c_l)`` are its weights and hidden
biases, and a softmax output layer on top gives ``p(y | v)``.  :func:`mlp_params_from_rbms`
builds the Flax parameter dict from any list of ``(W, c)`` pairs (or :class:`RBMParams`),
so a DBM's mean-field-augmented input layer (a ``W`` with extra rows for the appended
features) fits too.

Used as a pure ``(apply_fn, params)`` pair (Flax Linen): ``MLP(...).apply({"params": p}, x)``
returns logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from egm.errors import ConfigError


class MLP(nn.Module):
    """``hidden`` sigmoid layers then a linear layer of ``n_classes`` logits (softmax in the loss)."""

    hidden: Sequence[int]
    n_classes: int

    @nn.compact
    def __call__(self, x: Float[Array, "*b D"]) -> Float[Array, "*b K"]:
        for i, n in enumerate(self.hidden):
            x = nn.sigmoid(nn.Dense(n, name=f"hidden_{i}")(x))
        return nn.Dense(self.n_classes, name="output")(x)


def _pair(layer: Any) -> tuple[Array, Array]:
    if hasattr(layer, "W") and hasattr(layer, "c"):
        return layer.W, layer.c
    try:
        W, c = layer
    except (TypeError, ValueError):
        raise ConfigError(
            f"each pretrained layer must be RBMParams or a (W, c) pair, got {type(layer).__name__}"
        ) from None
    return W, c


def mlp_params_from_rbms(
    rbms: Sequence[Any],
    n_classes: int,
    key: PRNGKeyArray,
    *,
    output_scale: float = 0.01,
) -> tuple[MLP, dict]:
    """``(module, params)`` of an :class:`MLP` whose hidden layer ``l`` is ``σ(x W_l + c_l)``.

    ``rbms``: a sequence of :class:`RBMParams` or ``(W, c)`` pairs with ``W`` of shape
    ``(D_l, H_l)`` and ``H_l = D_{l+1}``; the output layer is ``N(0, output_scale²)`` weights
    and zero biases (drawn from ``key``).
    """
    if n_classes < 2:
        raise ConfigError(f"n_classes must be >= 2, got {n_classes}")
    pairs = [_pair(layer) for layer in rbms]
    if not pairs:
        raise ConfigError("mlp_params_from_rbms needs at least one pretrained layer")
    params: dict[str, Any] = {}
    for i, (W, c) in enumerate(pairs):
        W, c = jnp.asarray(W, jnp.float32), jnp.asarray(c, jnp.float32)
        if W.ndim != 2 or c.shape != (W.shape[1],):
            raise ConfigError(f"layer {i}: W {W.shape} and c {c.shape} do not match")
        if i > 0 and W.shape[0] != pairs[i - 1][0].shape[1]:
            raise ConfigError(
                f"layer {i} takes {W.shape[0]} inputs but layer {i - 1} has "
                f"{pairs[i - 1][0].shape[1]} outputs"
            )
        params[f"hidden_{i}"] = {"kernel": W, "bias": c}
    n_top = pairs[-1][0].shape[1]
    params["output"] = {
        "kernel": output_scale * jax.random.normal(key, (n_top, n_classes), jnp.float32),
        "bias": jnp.zeros((n_classes,), jnp.float32),
    }
    module = MLP(hidden=tuple(int(W.shape[1]) for W, _ in pairs), n_classes=n_classes)
    return module, params
