"""Arrange images and filters into one tiled array (pure numpy; writing PNGs is the experiments' job)."""

from __future__ import annotations

import numpy as np


def tile_images(
    x: np.ndarray,
    shape: tuple[int, int],
    n_cols: int | None = None,
    pad: int = 1,
    normalize: bool = False,
) -> np.ndarray:
    """Tile rows of ``x`` (N, h*w) into a grid image (float in [0, 1]).

    ``normalize``: scale each tile to [0, 1] on its own (for weight filters).
    """
    x = np.asarray(x, np.float32).reshape(len(x), *shape)
    if normalize:
        lo = x.min(axis=(1, 2), keepdims=True)
        hi = x.max(axis=(1, 2), keepdims=True)
        x = (x - lo) / np.maximum(hi - lo, 1e-8)
    n = len(x)
    n_cols = n_cols or int(np.ceil(np.sqrt(n)))
    n_rows = int(np.ceil(n / n_cols))
    h, w = shape
    out = np.ones((n_rows * (h + pad) + pad, n_cols * (w + pad) + pad), np.float32)
    for i in range(n):
        r, c = divmod(i, n_cols)
        out[
            pad + r * (h + pad) : pad + r * (h + pad) + h,
            pad + c * (w + pad) : pad + c * (w + pad) + w,
        ] = x[i]
    return out


def figure_image(fig) -> np.ndarray:
    """A drawn matplotlib figure as a grey image in [0, 1] (the experiments' PNG writer takes
    grey arrays); the figure is closed."""
    import matplotlib.pyplot as plt

    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].mean(-1) / 255.0
    plt.close(fig)
    return image


def pyplot():
    """``matplotlib.pyplot`` with the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def grid_2d(n: int, lim: float = 2.5) -> np.ndarray:
    """The ``n × n`` pixel centres of the square ``[-lim, lim]²`` as points ``(x, y)``, row
    by row from the top (``y = lim``) as an image is stored: a density evaluated on them
    reshapes to an ``(n, n)`` picture."""
    g = np.linspace(-lim, lim, n, dtype=np.float32)
    return np.stack(np.meshgrid(g, g[::-1], indexing="xy"), -1).reshape(-1, 2)


def histogram_2d(points, n: int, lim: float = 2.5) -> np.ndarray:
    """The ``(n, n)`` picture (oriented as :func:`grid_2d`) of the counts of ``points`` in the
    square's cells, scaled to a maximum of 1: samples drawn beside a density plot."""
    p = np.asarray(points)
    edges = np.linspace(-lim, lim, n + 1)
    h = np.histogram2d(p[:, 1], p[:, 0], [edges, edges])[0][::-1]
    return h / max(h.max(), 1.0)


def density_image(log_p, n: int) -> np.ndarray:
    """A log density evaluated on :func:`grid_2d` as an ``(n, n)`` picture exp(log p − max)."""
    lp = np.asarray(log_p, np.float64)
    return np.exp(lp - lp.max()).reshape(n, n)


def panels(rows, pad: int = 2) -> np.ndarray:
    """Equal-sized pictures in [0, 1] tiled row by row with a white border of ``pad``."""
    return np.concatenate(
        [np.concatenate([np.pad(p, pad, constant_values=1.0) for p in r], 1) for r in rows], 0
    )
