r"""The Laplacian pyramid of LAPGAN (Denton et al. 2015; §20.10.4).

LAPGAN generates an image coarse to fine: a GAN draws the coarsest level
:math:`\tilde I_K`, and at each finer level k a conditional GAN draws the residual
:math:`\tilde h_k = G_k(z_k, u(\tilde I_{k+1}))` given the up-sampled coarser image, so
:math:`\tilde I_k = u(\tilde I_{k+1}) + \tilde h_k`.  Its training data are the levels of the
Laplacian pyramid of each image: :math:`I_0 = I`, :math:`I_{k+1} = d(I_k)` and residuals
:math:`h_k = I_k - u(d(I_k))`, from which :math:`I` is rebuilt exactly by the same
recurrence (:func:`reconstruct`).  Here ``d`` is 2 × 2 mean pooling and ``u`` nearest-
neighbour ×2 up-sampling (Denton et al. blur with a Gaussian before sub-sampling; any pair
(d, u) gives an exact pyramid, because each residual is defined as what ``u(d(·))`` misses).
On MNIST, 28 → 14 → 7.

The generative pyramid (:class:`LapGAN`): at the coarsest level an unconditional GAN
(:class:`~egm.models.gan.MLPGenerator`, maxout discriminator) of ``I_K``; at each finer level
a conditional GAN whose generator :class:`ConditionalGenerator` maps ``(z_k, l_k)``,
``l_k = u(I_{k+1})``, to the residual ``h_k`` and whose discriminator sees ``(h_k, l_k)``
concatenated.  Dense nets at every level (Denton et al. use an MLP at CIFAR's coarsest 8 × 8
level and conv nets above it; dense nets on 7/14/28-pixel MNIST levels keep the CPU budget).
The levels train independently on the pyramid of the training images (:func:`lapgan_players`:
one multi-player step, two players per level) and sample coarse to fine
(:func:`coarse_to_fine`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from egm.errors import ConfigError, DataError
from egm.models import gan
from egm.train.state import ObjectiveOut, Player

__all__ = [
    "ConditionalGenerator",
    "LapGAN",
    "coarse_to_fine",
    "discriminator_logits",
    "downsample",
    "init_lapgan",
    "level_scores",
    "lapgan_players",
    "laplacian_pyramid",
    "pyramid_pairs",
    "reconstruct",
    "sample",
    "upsample",
]


def downsample(x: Float[Array, "n h w"]) -> Float[Array, "n h/2 w/2"]:
    """``d``: the mean of each 2 × 2 block (``h`` and ``w`` even)."""
    n, h, w = x.shape
    if h % 2 or w % 2:
        raise DataError(f"downsample needs even image sides, got {h}x{w}")
    return x.reshape(n, h // 2, 2, w // 2, 2).mean(axis=(2, 4))


def upsample(x: Float[Array, "n h w"]) -> Float[Array, "n 2h 2w"]:
    """``u``: each pixel repeated into a 2 × 2 block (nearest neighbour)."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def laplacian_pyramid(
    x: Float[Array, "n h w"], levels: int
) -> tuple[Float[Array, "n hK wK"], list[Float[Array, "n hk wk"]]]:
    """``(I_K, [h_0, ..., h_{K-1}])`` for ``K = levels`` down-samplings: the coarsest image
    and the residuals ``h_k = I_k - u(d(I_k))``, finest first."""
    if not (isinstance(levels, int) and levels >= 0):
        raise ConfigError(f"levels must be an integer >= 0, got {levels!r}")
    h, w = x.shape[1:]
    if h % 2**levels or w % 2**levels:
        raise ConfigError(
            f"{levels} halvings need image sides divisible by {2**levels}, got {h}x{w} "
            f"(28x28 MNIST takes levels <= 2: 28 -> 14 -> 7)"
        )
    residuals, level = [], jnp.asarray(x)
    for _ in range(levels):
        coarse = downsample(level)
        residuals.append(level - upsample(coarse))
        level = coarse
    return level, residuals


def reconstruct(
    coarsest: Float[Array, "n hK wK"], residuals: list[Float[Array, "n hk wk"]]
) -> Float[Array, "n h w"]:
    """``I_0`` from the pyramid: ``I_k = u(I_{k+1}) + h_k``, coarse to fine (the sampling
    recurrence of LAPGAN with the true residuals)."""
    level = coarsest
    for h in reversed(residuals):
        level = upsample(level) + h
    return level


# ------------------------------------------------------------------------ the generative pyramid


class ConditionalGenerator(nn.Module):
    r"""The residual generator of one finer level, :math:`\tilde h_k = G_k(z_k, l_k)` with
    :math:`l_k = u(I_{k+1})` the up-sampled coarser image (both ``side × side``, flattened):
    the noise and the condition are concatenated (Denton et al. stack the condition as an
    extra channel; for dense layers that is the concatenation of the flattened maps), then
    dense ReLU layers of ``hidden`` widths and a ``tanh`` output (a residual lies in (-1, 1)).
    """

    latent_dim: int
    hidden: Sequence[int]
    side: int

    def check(self) -> ConditionalGenerator:
        """Raise :class:`ConfigError` for sizes the module cannot take."""
        if not (isinstance(self.latent_dim, int) and self.latent_dim >= 1):
            raise ConfigError(f"latent_dim must be an integer >= 1, got {self.latent_dim!r}")
        if any(not (isinstance(h, int) and h >= 1) for h in self.hidden) or self.side < 1:
            raise ConfigError(f"widths must be >= 1, got {tuple(self.hidden)}, side {self.side}")
        return self

    def noise(self, key: PRNGKeyArray, n: int) -> Float[Array, "n z"]:
        """``n`` draws of p(z) = N(0, I)."""
        return jax.random.normal(key, (n, self.latent_dim), jnp.float32)

    @nn.compact
    def __call__(self, z: Float[Array, "n z"], cond: Float[Array, "n x"]) -> Float[Array, "n x"]:
        if cond.shape[-1] != self.side**2:
            raise DataError(
                f"the level-{self.side} generator takes conditions of {self.side**2} values "
                f"(a {self.side}x{self.side} image), got shape {cond.shape}"
            )
        h = jnp.concatenate([z, 2.0 * cond - 1.0], axis=-1)
        for i, width in enumerate(self.hidden):
            h = nn.relu(nn.Dense(width, name=f"hidden_{i}")(h))
        return jnp.tanh(nn.Dense(self.side**2, name="output")(h))


@dataclasses.dataclass(frozen=True)
class LapGAN:
    """The nets of a LAPGAN of ``levels`` halvings of ``image_side × image_side`` images: at
    level ``k < levels`` (side ``image_side / 2^k``; 0 is the full image) a
    :class:`ConditionalGenerator` and a maxout discriminator of ``(h_k, l_k)``; at the
    coarsest level ``levels`` an unconditional :class:`~egm.models.gan.MLPGenerator`
    (sigmoid) and a maxout discriminator of ``I_K``.  Parameter groups ``gen{k}``,
    ``disc{k}`` (:func:`init_lapgan`)."""

    image_side: int = 28
    levels: int = 2
    latent_dim: int = 100
    gen_hidden: tuple[int, ...] = (1200, 1200)
    disc_units: tuple[int, ...] = (240, 240)
    pieces: int = 5
    input_keep: float = 0.8
    hidden_keep: float = 0.5

    def check(self) -> LapGAN:
        """Raise :class:`ConfigError` for sizes the pyramid does not divide or bad widths."""
        s, k = self.image_side, self.levels
        if not (isinstance(k, int) and k >= 0 and isinstance(s, int) and s >= 1):
            raise ConfigError(f"need levels >= 0 and image_side >= 1, got {k!r}, {s!r}")
        if s % 2**k:
            raise ConfigError(
                f"{k} halvings need an image side divisible by {2**k}, got {s} "
                f"(28x28 MNIST takes levels <= 2: 28 -> 14 -> 7)"
            )
        for k in range(self.levels + 1):
            self.gen(k).check(), self.disc(k).check()
        return self

    def side(self, k: int) -> int:
        """The side of level ``k``'s images."""
        return self.image_side // 2**k

    def gen(self, k: int) -> gan.MLPGenerator | ConditionalGenerator:
        """Level ``k``'s generator."""
        if k == self.levels:
            return gan.MLPGenerator(self.latent_dim, self.gen_hidden, self.side(k) ** 2, irange=0)
        return ConditionalGenerator(self.latent_dim, self.gen_hidden, self.side(k))

    def disc(self, k: int) -> gan.MaxoutDiscriminator:
        """Level ``k``'s discriminator (of ``I_K``, or of ``(h_k, l_k)`` concatenated)."""
        return gan.MaxoutDiscriminator(
            self.disc_units, self.pieces, 0.005, self.input_keep, self.hidden_keep
        )


def init_lapgan(
    key: PRNGKeyArray, model: LapGAN, coarse_mean: Float[Any, " x"] | None = None
) -> dict:
    """The params ``{"gen{k}", "disc{k}"}`` of every level; ``coarse_mean`` (the coarsest
    level's pixel marginals) starts the coarse generator at the mean image
    (:func:`egm.models.gan.init_generator`)."""
    model.check()
    if coarse_mean is not None:
        coarse_mean = jnp.asarray(coarse_mean, jnp.float32)
        if coarse_mean.shape != (model.side(model.levels) ** 2,):
            raise DataError(
                f"coarse_mean has shape {coarse_mean.shape}; the coarsest level has "
                f"{model.side(model.levels) ** 2} pixels"
            )
    return _init(model, key, coarse_mean)


@partial(jax.jit, static_argnums=0)
def _init(model: LapGAN, key: PRNGKeyArray, coarse_mean: Array | None) -> dict:
    params, keys = {}, jax.random.split(key, 2 * (model.levels + 1))
    for k in range(model.levels + 1):
        g, s2 = model.gen(k), model.side(k) ** 2
        if k == model.levels:
            params[f"gen{k}"] = gan.init_generator(keys[2 * k], g, coarse_mean)
        else:
            z = jnp.zeros((1, model.latent_dim))
            params[f"gen{k}"] = g.init(keys[2 * k], z, jnp.zeros((1, s2)))["params"]
        x_dim = s2 if k == model.levels else 2 * s2
        params[f"disc{k}"] = gan.init_discriminator(keys[2 * k + 1], model.disc(k), x_dim)
    return params


def pyramid_pairs(
    model: LapGAN, x: Float[Array, "n x"]
) -> list[tuple[Float[Array, "n xk"], Float[Array, "n xk"] | None]]:
    """The training pairs of every level: ``(h_k, l_k = u(I_{k+1}))`` flattened, and
    ``(I_K, None)`` at the coarsest."""
    n, s = x.shape[0], model.image_side
    coarse, residuals = laplacian_pyramid(x.reshape(n, s, s), model.levels)
    levels = [coarse]
    for h in reversed(residuals):
        levels.insert(0, upsample(levels[0]) + h)  # I_k, finest first
    out = [(residuals[k].reshape(n, -1), upsample(levels[k + 1]).reshape(n, -1))
           for k in range(model.levels)]  # fmt: skip
    return [*out, (coarse.reshape(n, -1), None)]


def _generate(model: LapGAN, params: dict, k: int, z: Array, cond: Array | None) -> Array:
    g = model.gen(k)
    if cond is None:
        return g.apply({"params": params[f"gen{k}"]}, z)
    return g.apply({"params": params[f"gen{k}"]}, z, cond)


def discriminator_logits(
    model: LapGAN,
    params: dict,
    k: int,
    x: Float[Array, "n xk"],
    cond: Float[Array, "n xk"] | None,
    key: PRNGKeyArray | None = None,
) -> Float[Array, " n"]:
    """Level ``k``'s discriminator logit of ``x`` (``I_K``, or ``h_k`` beside its condition
    ``l_k``); dropout with a ``key``."""
    inp = x if cond is None else jnp.concatenate([x, cond], axis=-1)
    return model.disc(k).apply({"params": params[f"disc{k}"]}, inp, dropout_key=key)


def lapgan_players(
    model: LapGAN,
    disc_optimizer: optax.GradientTransformation,
    gen_optimizer: optax.GradientTransformation,
    *,
    loss: str = "non_saturating",
) -> tuple[Player, ...]:
    """Two :class:`~egm.train.Player`\\ s per level for :func:`egm.train.make_multi_step`
    (batch: ``(m, image_side²)`` real images), finest level first, each level's
    discriminator then its generator, each a GAN update (eq. 20.80,
    :func:`egm.models.gan.discriminator_loss` / :func:`~egm.models.gan.generator_loss`) on
    that level's pyramid of the batch, conditioned at the finer levels on the *true*
    up-sampled coarser image (Denton et al. §3.2: the levels train independently).  Every
    objective reads only its own level's groups.  Metrics ``disc{k}/loss``,
    ``disc{k}/d_real``, ``disc{k}/d_fake``, ``gen{k}/loss``."""
    model.check()
    if loss not in gan.GENERATOR_LOSSES:
        raise ConfigError(f"generator loss {loss!r}: use one of {gan.GENERATOR_LOSSES}")

    def players(k: int) -> tuple[Player, Player]:
        def disc_loss(dp, params, batch, key):
            k_z, k_r, k_f = jax.random.split(key, 3)
            x, cond = pyramid_pairs(model, batch)[k]
            z = model.gen(k).noise(k_z, x.shape[0])
            fake = jax.lax.stop_gradient(_generate(model, params, k, z, cond))
            p = {**params, f"disc{k}": dp}
            lr, lf = (
                discriminator_logits(model, p, k, x, cond, k_r),
                discriminator_logits(model, p, k, fake, cond, k_f),
            )
            aux = {"d_real": jnp.mean(jax.nn.sigmoid(lr)), "d_fake": jnp.mean(jax.nn.sigmoid(lf))}
            return gan.discriminator_loss(lr, lf), aux

        def gen_loss(gp, params, batch, key):
            k_z, k_d = jax.random.split(key)
            x, cond = pyramid_pairs(model, batch)[k]
            p = {**params, f"gen{k}": gp}
            fake = _generate(model, p, k, model.gen(k).noise(k_z, x.shape[0]), cond)
            return gan.generator_loss(discriminator_logits(model, p, k, fake, cond, k_d), loss)

        def disc_objective(params, batch, key, chains, aux):
            (v, extra), g = jax.value_and_grad(disc_loss, has_aux=True)(
                params[f"disc{k}"], params, batch, key
            )
            return ObjectiveOut(g, chains, aux, {"loss": v, **extra})

        def gen_objective(params, batch, key, chains, aux):
            v, g = jax.value_and_grad(gen_loss)(params[f"gen{k}"], params, batch, key)
            return ObjectiveOut(g, chains, aux, {"loss": v})

        return (Player(f"disc{k}", disc_objective, disc_optimizer),
                Player(f"gen{k}", gen_objective, gen_optimizer))  # fmt: skip

    return tuple(p for k in range(model.levels + 1) for p in players(k))


@partial(jax.jit, static_argnums=(0, 3))
def coarse_to_fine(
    model: LapGAN, params: dict, key: PRNGKeyArray, n: int
) -> list[Float[Array, "n s s"]]:
    r"""LAPGAN's sampling recurrence, coarsest first: :math:`\tilde I_K = G_K(z_K)`, then
    :math:`\tilde I_k = \mathrm{clip}(u(\tilde I_{k+1}) + G_k(z_k, u(\tilde I_{k+1})), 0, 1)`.
    Returns ``[Ĩ_K, ..., Ĩ_0]``, ``n`` images each."""
    keys = jax.random.split(key, model.levels + 1)
    K = model.levels
    s = model.side(K)
    img = _generate(model, params, K, model.gen(K).noise(keys[K], n), None).reshape(n, s, s)
    out = [img]
    for k in reversed(range(K)):
        cond = upsample(img)
        z = model.gen(k).noise(keys[k], n)
        h = _generate(model, params, k, z, cond.reshape(n, -1)).reshape(cond.shape)
        img = jnp.clip(cond + h, 0.0, 1.0)
        out.append(img)
    return out


def sample(key: PRNGKeyArray, model: LapGAN, params: dict, n: int) -> Float[Array, "n x"]:
    """``n`` LAPGAN samples :math:`\\tilde I_0` (:func:`coarse_to_fine`), flattened, in [0, 1]."""
    if not (isinstance(n, int) and n >= 1):
        raise ConfigError(f"n (samples) must be an integer >= 1, got {n!r}")
    return coarse_to_fine(model, params, key, n)[-1].reshape(n, -1)


@partial(jax.jit, static_argnums=0)
def level_scores(
    model: LapGAN, params: dict, real: Float[Array, "n x"], fake: Float[Array, "m x"]
) -> tuple[Float[Array, " K"], Float[Array, " K"]]:
    """Mean ``d`` of every level's discriminator (no dropout) on the pyramid of ``real``
    and of ``fake`` images (:func:`pyramid_pairs`), finest level first."""

    def means(x):
        pairs = pyramid_pairs(model, x)
        return jnp.stack(
            [jnp.mean(jax.nn.sigmoid(discriminator_logits(model, params, k, *pairs[k])))
             for k in range(model.levels + 1)]
        )  # fmt: skip

    return means(real), means(fake)
