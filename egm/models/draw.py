"""DRAW: a recurrent VAE that draws on a canvas (Gregor et al. 2015; Deep Learning §20.10.3).

At each of ``T`` steps, with canvas ``c_{t-1}`` and ``x̂_t = x - σ(c_{t-1})`` (the error
image), DRAW computes (paper eqs. 3-8)

    r_t     = read(x, x̂_t, h^dec_{t-1})
    h^enc_t = LSTM^enc(h^enc_{t-1}, [r_t, h^dec_{t-1}])
    z_t     ~ Q(z_t | h^enc_t) = N(mu_t, diag sigma_t^2)      (reparameterised, §20.9)
    h^dec_t = LSTM^dec(h^dec_{t-1}, z_t)
    c_t     = c_{t-1} + write(h^dec_t)

and ``D(x | c_T) = Bernoulli(σ(c_T))``.  The loss is the negative ELBO ``L = L^x + L^z``
with ``L^x = -log D(x | c_T)`` and ``L^z = Σ_t KL(Q(z_t | h^enc_t) || N(0, I))``, an upper
bound on ``-log p(x)``.

*No attention*: ``read`` returns ``[x, x̂]`` and ``write`` a dense map of ``h^dec`` to the
whole canvas.  *Attention* (§3.2): an ``N x N`` grid of Gaussian filters whose centre
``(g_X, g_Y)``, stride ``δ``, variance ``σ²`` and intensity ``γ`` are a linear function of
``h^dec``; ``read = γ [F_Y x F_X^T, F_Y x̂ F_X^T]`` and ``write = (1/γ̂) F̂_Y^T w_t F̂_X``
with ``w_t`` an ``N x N`` patch emitted by the decoder.

Everything works on ONE example (images flattened row-major to ``(B·A,)`` with ``B``
rows and ``A`` columns, as in the paper); batches come from ``vmap``.  The module is a
Flax Linen module used as a pure ``(apply_fn, params)`` pair; its per-step methods are
driven by ``lax.scan`` over pre-drawn noise in :func:`draw_forward` and :func:`generate`.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from egm.errors import ConfigError
from egm.models.vae import bernoulli_log_prob, gaussian_kl

# ----------------------------------------------------------------------------------------
# Attention filterbanks (paper §3.2, eqs. 19-26)
# ----------------------------------------------------------------------------------------


class Attention(NamedTuple):
    """Attention window of one glimpse, in pixel units (1-indexed, as in the paper)."""

    gx: Float[Array, ""]
    gy: Float[Array, ""]
    sigma2: Float[Array, ""]
    delta: Float[Array, ""]
    gamma: Float[Array, ""]


def attention_window(raw: Float[Array, " 5"], n: int, height: int, width: int) -> Attention:
    """Map the 5 linear outputs ``(g̃_X, g̃_Y, log σ², log δ̃, log γ)`` of ``h^dec`` to the
    window (eqs. 22-24): ``g_X = (A+1)/2 (g̃_X + 1)``, ``g_Y = (B+1)/2 (g̃_Y + 1)``,
    ``δ = (max(A, B) - 1)/(N - 1) δ̃`` (``A`` = width, ``B`` = height)."""
    gx_t, gy_t, log_s2, log_d, log_g = raw[0], raw[1], raw[2], raw[3], raw[4]
    gx = (width + 1) / 2.0 * (gx_t + 1.0)
    gy = (height + 1) / 2.0 * (gy_t + 1.0)
    delta = (max(width, height) - 1) / max(n - 1, 1) * jnp.exp(log_d)
    return Attention(gx, gy, jnp.exp(log_s2), delta, jnp.exp(log_g))


def filterbank(
    att: Attention, n: int, height: int, width: int
) -> tuple[Float[Array, "N A"], Float[Array, "N B"]]:
    """``(F_X, F_Y)`` of eqs. 19-21: row ``i`` of ``F_X`` is a Gaussian over the columns
    ``a = 1..A`` centred at ``mu_X^i = g_X + (i - N/2 - 0.5) δ`` (``i = 1..N``) with variance
    ``σ²``, normalised so that ``Σ_a F_X[i, a] = 1``; likewise ``F_Y`` over the rows."""
    i = jnp.arange(1, n + 1, dtype=jnp.float32)
    off = (i - n / 2.0 - 0.5) * att.delta

    def bank(g, size):
        mu = g + off  # (N,)
        a = jnp.arange(1, size + 1, dtype=jnp.float32)
        logits = -((a[None, :] - mu[:, None]) ** 2) / (2.0 * att.sigma2)
        # softmax over pixels = exp(...) / Z with a stable max shift
        return jax.nn.softmax(logits, axis=-1)

    return bank(att.gx, width), bank(att.gy, height)


def read_attention(x: Float[Array, "B A"], att: Attention, n: int) -> Float[Array, "N N"]:
    """Glimpse ``γ F_Y x F_X^T`` of one image (eq. 27 for one of ``x``, ``x̂``)."""
    fx, fy = filterbank(att, n, x.shape[0], x.shape[1])
    return att.gamma * (fy @ x @ fx.T)


def write_attention(
    patch: Float[Array, "N N"], att: Attention, height: int, width: int
) -> Float[Array, "B A"]:
    """Canvas update ``(1/γ̂) F̂_Y^T w F̂_X`` (eq. 29)."""
    fx, fy = filterbank(att, patch.shape[0], height, width)
    return (fy.T @ patch @ fx) / att.gamma


# ----------------------------------------------------------------------------------------
# Network
# ----------------------------------------------------------------------------------------


class DRAWCarry(NamedTuple):
    """Recurrent state of one example: canvas, encoder and decoder LSTM states ``(c, h)``."""

    canvas: Float[Array, " D"]
    enc: tuple[Array, Array]
    dec: tuple[Array, Array]


class DRAW(nn.Module):
    """DRAW network (Gregor et al. 2015).

    Fields: ``height``/``width`` of the images (``B``/``A``), ``n_steps`` ``T``,
    ``enc_size``/``dec_size`` LSTM units, ``latent_dim`` per step, ``attention`` (False:
    the no-attention variant), ``read_n``/``write_n`` glimpse sizes ``N``.  Paper MNIST
    setting: 28x28, T = 64, 256 LSTM units, 100 latents, read 2x2, write 5x5.
    """

    height: int = 28
    width: int = 28
    n_steps: int = 64
    enc_size: int = 256
    dec_size: int = 256
    latent_dim: int = 100
    attention: bool = True
    read_n: int = 2
    write_n: int = 5

    @property
    def x_dim(self) -> int:
        return self.height * self.width

    def check(self) -> DRAW:
        """Raise :class:`ConfigError` for an inconsistent configuration; return ``self``."""
        for name in ("height", "width", "n_steps", "enc_size", "dec_size", "latent_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"DRAW {name} must be >= 1, got {getattr(self, name)}")
        if self.attention and (self.read_n < 2 or self.write_n < 2):
            raise ConfigError(
                f"attention glimpses need read_n, write_n >= 2 (the stride is defined by "
                f"N - 1), got read_n={self.read_n}, write_n={self.write_n}"
            )
        return self

    def setup(self):
        self.enc_cell = nn.OptimizedLSTMCell(self.enc_size, name="enc_lstm")
        self.dec_cell = nn.OptimizedLSTMCell(self.dec_size, name="dec_lstm")
        self.q_mu = nn.Dense(self.latent_dim, name="q_mu")
        self.q_log_sigma = nn.Dense(self.latent_dim, name="q_log_sigma")
        if self.attention:
            self.read_window = nn.Dense(5, name="read_window")
            self.write_window = nn.Dense(5, name="write_window")
            self.write_patch = nn.Dense(self.write_n**2, name="write_patch")
        else:
            self.write_patch = nn.Dense(self.x_dim, name="write_canvas")

    def __call__(self, x: Float[Array, " D"]) -> Any:
        """One inference step from the initial state and one generation step (for init)."""
        carry = initial_carry(self)
        carry, _ = self.step(carry, x, jnp.zeros((self.latent_dim,)))
        return self.generate_step(carry, jnp.zeros((self.latent_dim,)))

    def read(self, x: Float[Array, " D"], x_hat: Float[Array, " D"], h_dec: Array) -> Array:
        """``r_t``: ``[x, x̂]`` (no attention) or the two ``N x N`` glimpses, flattened."""
        if not self.attention:
            return jnp.concatenate([x, x_hat])
        att = attention_window(self.read_window(h_dec), self.read_n, self.height, self.width)
        img = lambda v: v.reshape(self.height, self.width)
        g = [read_attention(img(v), att, self.read_n).reshape(-1) for v in (x, x_hat)]
        return jnp.concatenate(g)

    def write(self, h_dec: Array) -> Float[Array, " D"]:
        """``write(h^dec_t)``: the additive canvas update."""
        w = self.write_patch(h_dec)
        if not self.attention:
            return w
        att = attention_window(self.write_window(h_dec), self.write_n, self.height, self.width)
        patch = w.reshape(self.write_n, self.write_n)
        return write_attention(patch, att, self.height, self.width).reshape(-1)

    def step(
        self, carry: DRAWCarry, x: Float[Array, " D"], eps: Float[Array, " L"]
    ) -> tuple[DRAWCarry, tuple[Array, Array]]:
        """One inference step (eqs. 3-8); returns the new carry and ``(mu_t, log sigma_t)``."""
        h_dec = carry.dec[1]
        x_hat = x - jax.nn.sigmoid(carry.canvas)
        r = self.read(x, x_hat, h_dec)
        enc, h_enc = self.enc_cell(carry.enc, jnp.concatenate([r, h_dec]))
        mu, log_sigma = self.q_mu(h_enc), self.q_log_sigma(h_enc)
        z = mu + jnp.exp(log_sigma) * eps
        dec, h_dec = self.dec_cell(carry.dec, z)
        return DRAWCarry(carry.canvas + self.write(h_dec), enc, dec), (mu, log_sigma)

    def generate_step(self, carry: DRAWCarry, z: Float[Array, " L"]) -> DRAWCarry:
        """One generation step: ``h^dec_t = LSTM^dec(h^dec_{t-1}, z_t)``, ``c_t += write``."""
        dec, h_dec = self.dec_cell(carry.dec, z)
        return DRAWCarry(carry.canvas + self.write(h_dec), carry.enc, dec)


def initial_carry(model: DRAW) -> DRAWCarry:
    """Zero canvas and LSTM states (``σ(c_0) = 1/2``, as in the paper)."""
    z = lambda n: (jnp.zeros((n,)), jnp.zeros((n,)))
    return DRAWCarry(jnp.zeros((model.x_dim,)), z(model.enc_size), z(model.dec_size))


def init_params(key: PRNGKeyArray, model: DRAW) -> Any:
    """Parameters of ``model`` (checked first)."""
    model.check()
    return model.init(key, jnp.zeros((model.x_dim,)))


class DRAWOutput(NamedTuple):
    """Per-example result of :func:`draw_forward`.

    ``loss_x = -log D(x | c_T)``; ``kl``: ``(T,)`` per-step ``KL(Q(z_t|h^enc_t) || N(0,I))``;
    ``loss = loss_x + Σ kl``, the negative ELBO (an upper bound on ``-log p(x)``);
    ``canvases``: ``(T, D)`` canvases ``σ(c_t)`` if requested, else ``None``."""

    loss: Float[Array, ""]
    loss_x: Float[Array, ""]
    kl: Float[Array, " T"]
    canvases: Float[Array, "T D"] | None


def draw_forward(
    key: PRNGKeyArray,
    model: DRAW,
    params: Any,
    x: Float[Array, " D"],
    *,
    return_canvases: bool = False,
) -> DRAWOutput:
    """The DRAW loss of one binary image ``x`` (``(B·A,)``), a ``lax.scan`` over ``T`` steps
    with reparameterised ``z_t`` from pre-drawn ``eps ~ N(0, I)``."""
    eps = jax.random.normal(key, (model.n_steps, model.latent_dim))

    def body(carry, e):
        carry, (mu, log_sigma) = model.apply(params, carry, x, e, method=DRAW.step)
        out = (gaussian_kl(mu, log_sigma), jax.nn.sigmoid(carry.canvas) if return_canvases else 0)
        return carry, out

    final, (kl, canv) = jax.lax.scan(body, initial_carry(model), eps)
    loss_x = -bernoulli_log_prob(final.canvas, x)
    return DRAWOutput(loss_x + jnp.sum(kl), loss_x, kl, canv if return_canvases else None)


def make_loss(model: DRAW, *, dynamic_binarization: bool = False):
    """``loss(params, batch, key) -> (mean negative ELBO, metrics)``, vmapped over the batch;
    with ``dynamic_binarization`` the grey batch is re-drawn as Bernoulli first."""
    model.check()

    def loss(params, batch, key):
        k_bin, k_z = jax.random.split(key)
        if dynamic_binarization:
            batch = jax.random.bernoulli(k_bin, batch).astype(jnp.float32)
        keys = jax.random.split(k_z, batch.shape[0])
        out = jax.vmap(lambda k, x: draw_forward(k, model, params, x))(keys, batch)
        value = jnp.mean(out.loss)
        return value, {
            "neg_elbo": value,
            "loss_x": jnp.mean(out.loss_x),
            "loss_z": jnp.mean(jnp.sum(out.kl, -1)),
        }

    return loss


def canvases(
    key: PRNGKeyArray, model: DRAW, params: Any, x: Float[Array, "N D"]
) -> Float[Array, "N T D"]:
    """The canvas sequences ``σ(c_1..T)`` of :func:`draw_forward` for a batch of images
    (one draw of ``z_{1:T}`` each): how DRAW reconstructs them glimpse by glimpse."""
    keys = jax.random.split(key, x.shape[0])
    one = lambda k, xx: draw_forward(k, model, params, xx, return_canvases=True).canvases
    return jax.vmap(one)(keys, jnp.asarray(x))


def decode(
    model: DRAW, params: Any, z: Float[Array, "T L"], every_step: bool = False
) -> Float[Array, "T D"] | Float[Array, " D"]:
    """The generator alone for one example's latents ``z_{1:T}``: the canvases
    ``σ(c_1..T)`` (``every_step``) or only the last, the mean of ``D(x | c_T)``."""

    def body(carry, zt):
        carry = model.apply(params, carry, zt, method=DRAW.generate_step)
        return carry, jax.nn.sigmoid(carry.canvas) if every_step else None

    final, canvases = jax.lax.scan(body, initial_carry(model), z)
    return canvases if every_step else jax.nn.sigmoid(final.canvas)


def generate(key: PRNGKeyArray, model: DRAW, params: Any, n: int) -> Float[Array, "n T D"]:
    """``n`` samples: ``z_t ~ N(0, I)`` through the decoder; returns every canvas ``σ(c_t)``
    (the last one is the sample's mean image)."""
    z = jax.random.normal(key, (n, model.n_steps, model.latent_dim))
    return jax.vmap(lambda zz: decode(model, params, zz, True))(z)


def sample(key: PRNGKeyArray, model: DRAW, params: Any, n: int) -> Float[Array, "n D"]:
    """``n`` binary images by ancestral sampling: ``z_{1:T} ~ N(0, I)`` through the
    decoder, then ``x ~ D(x | c_T) = Bernoulli(σ(c_T))``; only the last canvas is kept."""
    k_z, k_x = jax.random.split(key)
    z = jax.random.normal(k_z, (n, model.n_steps, model.latent_dim))
    mean = jax.vmap(lambda zz: decode(model, params, zz))(z)
    return jax.random.bernoulli(k_x, mean).astype(jnp.float32)


def nll_bound(
    key: PRNGKeyArray,
    model: DRAW,
    params: Any,
    x: Float[Array, "N D"],
    *,
    batch_size: int = 500,
) -> Float[Array, " N"]:
    """Per-example negative ELBO (one draw of ``z_{1:T}`` each): the paper's reported
    "bound on the test NLL" is its mean.  In batches (remainder handled)."""
    x = jnp.asarray(x)
    keys = jax.random.split(key, x.shape[0])
    fn = _cached_loss_fn(model.check())  # compiled once per model, not per call
    return jnp.concatenate(
        [
            fn(params, keys[i : i + batch_size], x[i : i + batch_size])
            for i in range(0, x.shape[0], batch_size)
        ]
    )


@functools.lru_cache(maxsize=16)
def _cached_loss_fn(model: DRAW):
    one = lambda params, k, x: draw_forward(k, model, params, x).loss
    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0)))
