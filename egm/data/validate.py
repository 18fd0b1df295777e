"""Host-side checks of input data, shared by every model.

Each check converts its input with ``np.asarray`` (so numpy and jax arrays both
work), raises :class:`egm.errors.DataError` with a message that says what was
found and how to fix it, and returns ``None`` when the data is fine. They read
concrete values, so call them before ``jit``, never inside it.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import ArrayLike

from egm.errors import DataError

__all__ = ["check_binary", "check_finite", "check_shape", "check_unit_interval"]


def _as_numeric(x: ArrayLike, name: str) -> np.ndarray:
    """``np.asarray(x)``, refusing non-numeric dtypes (strings, objects)."""
    arr = np.asarray(x)
    if arr.dtype == np.bool_:
        return arr
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise DataError(
            f"{name} has dtype {arr.dtype}; expected a real numeric array (float32 by default)"
        )
    return arr


def _num(v: float) -> str:
    """A value to 4 significant digits, written like a Python float: 0.0, 0.996, 255.0."""
    return repr(float(f"{v:.4g}"))


def _shape_str(shape: tuple[int, ...]) -> str:
    """Shape with the leading (batch) axis written as N, e.g. ``(N, 28, 28)``."""
    if not shape:
        return "() (a scalar)"
    return "(" + ", ".join(["N", *(str(d) for d in shape[1:])]) + (",)" if len(shape) == 1 else ")")


def check_shape(x: ArrayLike, n_features: int | None = None, name: str = "data") -> None:
    """Check that ``x`` is a non-empty 2-D batch ``(N, D)``, with ``D == n_features`` if given.

    Args:
      x: the data, one example per row.
      n_features: the expected number of columns ``D``; ``None`` accepts any.
      name: what the data is called in the error message.

    Raises:
      DataError: e.g. ``"data: expected shape (N, 784), got (N, 28, 28); flatten with
        x.reshape(len(x), -1)"``.
    """
    shape = tuple(np.shape(x))
    want = f"(N, {n_features})" if n_features is not None else "(N, D)"
    if len(shape) != 2:
        hint = ""
        if len(shape) > 2:
            if n_features is None or int(np.prod(shape[1:])) == n_features:
                hint = "; flatten with x.reshape(len(x), -1)"
            else:
                hint = f"; its {int(np.prod(shape[1:]))} values per example do not flatten to D"
        elif len(shape) == 1:
            hint = "; a single example needs a batch axis: x[None, :]"
        raise DataError(f"{name}: expected shape {want}, got {_shape_str(shape)}{hint}")
    if shape[0] == 0:
        raise DataError(f"{name} is empty: expected shape {want}, got {shape}")
    if n_features is not None and shape[1] != n_features:
        raise DataError(
            f"{name}: expected shape {want}, got {_shape_str(shape)}: "
            f"{shape[1]} features instead of {n_features}"
        )


def check_finite(x: ArrayLike, name: str = "data") -> None:
    """Check that ``x`` has no NaN or infinite entries.

    Raises:
      DataError: naming how many entries are NaN and how many infinite.
    """
    arr = _as_numeric(x, name)
    if not np.issubdtype(arr.dtype, np.floating):
        return
    finite = np.isfinite(arr)
    if not finite.all():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(arr.size - finite.sum() - n_nan)
        raise DataError(
            f"{name} contains {n_nan} NaN and {n_inf} infinite values out of {arr.size}; "
            "clean or drop those examples before training"
        )


def check_unit_interval(x: ArrayLike, name: str = "data") -> None:
    """Check that ``x`` holds finite grey values in ``[0, 1]``.

    Raises:
      DataError: with the min and max found, e.g. when 8-bit images were not divided
        by 255.
    """
    arr = _as_numeric(x, name)
    check_finite(arr, name)
    if arr.size == 0:
        return
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        hint = "; 8-bit images must be scaled with x / 255" if hi > 1.0 and lo >= 0.0 else ""
        raise DataError(
            f"{name} has values outside [0, 1] (min {_num(lo)}, max {_num(hi)}); "
            f"expected grey values / probabilities in [0, 1]{hint}"
        )


def check_binary(x: ArrayLike, name: str = "data") -> None:
    """Check that ``x`` is a finite 2-D batch ``(N, D)`` whose entries are all 0 or 1.

    This is what a Bernoulli-Bernoulli RBM (and every other binary-visible model)
    needs as input.

    Raises:
      DataError: e.g. ``"data contains values other than 0 and 1 (min 0.0, max 0.996,
        83% non-binary); a Bernoulli-Bernoulli RBM needs binary data: binarize with
        egm.data.binarize_fixed or binarize_threshold"``.
    """
    arr = _as_numeric(x, name)
    check_shape(arr, None, name)
    check_finite(arr, name)
    if arr.dtype == np.bool_:
        return
    non_binary = (arr != 0) & (arr != 1)
    count = int(non_binary.sum())
    if count:
        frac = count / arr.size
        pct = f"{100 * frac:.0f}%" if frac >= 0.01 else f"{count} of {arr.size} entries"
        raise DataError(
            f"{name} contains values other than 0 and 1 (min {_num(float(arr.min()))}, "
            f"max {_num(float(arr.max()))}, {pct} non-binary); a Bernoulli-Bernoulli RBM "
            "needs binary data: binarize with egm.data.binarize_fixed or binarize_threshold"
        )


def binary_data_check(n_visible: int, dynamic: bool = False):
    """A host-side check of training data for a binary-visible model, to pass to
    ``egm.train.fit(data_check=...)``: ``(N, n_visible)``, finite, and binary — or grey
    values in [0, 1] when the train step re-binarizes dynamically (``dynamic``)."""

    def check(x: ArrayLike) -> None:
        check_shape(x, n_visible, "training data")
        (check_unit_interval if dynamic else check_binary)(x, "training data")

    return check
