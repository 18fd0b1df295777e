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
