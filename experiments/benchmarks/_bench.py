"""Shared plumbing of the benchmark scripts: interleaved timing, JSON lines, data, HLO counts.

Protocol (DESIGN.md §4): every contender (egm and its peers) is compiled and run once
untimed, then the timed calls are *interleaved* -- round r times each contender once, the
order rotating between rounds -- so a burst of background load hits all of them alike.
A benchmark reports the median of each contender's timed calls and the ratio of the
medians; the raw times travel in the JSON line too.

The GEMM bound (:func:`hlo_products`, :func:`make_gemm_bound`): the matrix products of
egm's compiled program, timed alone in a jitted scan of the same length with no random
draws, as one more interleaved contender; ``gemm_bound_fraction`` = its seconds / egm's
(1 would mean egm spends all its time in those products).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = os.environ.get("EGM_DATA_DIR", str(REPO.parent / "shared" / "data" / "mnist"))


def interleaved(
    contenders: dict[str, Callable[[], Any]],
    repeats: int,
    *,
    warmups: dict[str, Callable[[], Any] | None] | None = None,
    settle_s: float = 1.0,
) -> dict[str, list[float]]:
    """Time each zero-argument callable ``repeats`` times, interleaved; seconds per call.

    Each callable must block until its work is done (``jax.block_until_ready``).  First
    every contender runs once untimed (compilation, caches), or runs
    ``warmups[name]`` instead when given (``None`` there: no warm-up, e.g. when the
    caller compiled ahead of time).  Before each timed call the process sleeps
    ``settle_s`` seconds: OpenBLAS (sklearn) and XLA keep their worker threads spinning for
    a while after a call returns, which otherwise slows whichever contender runs next
    (measured: egm's PCD epoch 0.89 s when it ran first, 1.23 s right after sklearn).
    """
    names = list(contenders)
    warmups = warmups or {}
    for name in names:
        w = warmups.get(name, contenders[name])
        if w is not None:
            w()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            time.sleep(settle_s)
            t0 = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def sig(x: float | None, digits: int = 4) -> float | None:
    """Round to ``digits`` significant figures (JSON readability)."""
    if x is None or not np.isfinite(x) or x == 0:
        return x
    return float(f"{x:.{digits - 1}e}")


def environment() -> dict[str, Any]:
    """Machine context for a JSON line; call it before the work starts, so that
    ``load_avg_1m`` shows the background load (something else running), not ours."""
    return {
        "backend": jax.default_backend(),
        "jax": jax.__version__,
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "rng": f"threefry2x32, partitionable={bool(jax.config.jax_threefry_partitionable)}",
    }


def rng_mode():
    """The RNG lowering every JAX contender (egm, thrml, dense reference) runs under.

    On CPU the benchmarks use ``jax.threefry_partitionable(False)``, as egm's experiments
    do (``egm.run.driver.rng_mode``, their ``fast_cpu_rng`` field): the same Threefry-2x32 generator with about 2x
    faster random bits on CPU.  ``EGM_BENCH_PARTITIONABLE_RNG=1`` keeps JAX's default.
    Every JSON line records the setting in ``rng``.
    """
    import contextlib

    if os.environ.get("EGM_BENCH_PARTITIONABLE_RNG") != "1" and jax.default_backend() == "cpu":
        return jax.threefry_partitionable(False)
    return contextlib.nullcontext()


def emit(record: dict[str, Any], file: Any = None) -> dict[str, Any]:
    """Print one JSON line (flushed) and return the record.

    A ``--quick`` record keeps its target text but ``target_met`` is ``None``: the
    targets are stated for the full sizes only.
    """
    if record.get("quick"):
        record = {**record, "target_met": None}
    print(json.dumps(record, allow_nan=False), file=file or sys.stdout, flush=True)
    return record


def rate_line(
    bench: str,
    *,
    egm: float,
    peer: str,
    peer_value: float | None,
    unit: str,
    stat: str,
    target: str,
    min_ratio: float,
    **extra: Any,
) -> dict[str, Any]:
    """A JSON record where higher is better; ``ratio = egm / peer_value``."""
    ratio = None if not peer_value else egm / peer_value
    return {
        "bench": bench,
        "egm": sig(egm),
        "peer": peer,
        "peer_value": sig(peer_value),
        "ratio": sig(ratio, 3),
        "unit": unit,
        "stat": stat,
        "target": target,
        "target_met": None if ratio is None else bool(ratio >= min_ratio),
        **extra,
    }


def seconds_line(
    bench: str,
    *,
    egm: float,
    peer: str | None,
    peer_value: float | None,
    stat: str,
    target: str,
    target_met: bool | None,
    **extra: Any,
) -> dict[str, Any]:
    """A JSON record in seconds (lower is better); ``ratio = peer_value / egm`` (speed-up)."""
    ratio = None if not peer_value else peer_value / egm
    return {
        "bench": bench,
        "egm": sig(egm),
        "peer": peer,
        "peer_value": sig(peer_value),
        "ratio": sig(ratio, 3),
        "unit": "s",
        "ratio_is": "peer_value / egm (speed-up of egm)",
        "stat": stat,
        "target": target,
        "target_met": target_met,
        **extra,
    }


def runs(xs: Sequence[float]) -> list[float | None]:
    return [sig(x, 3) for x in xs]


def peer_available(module: str) -> str | None:
    """``None`` if ``module`` imports, else the reason to put in a skipped JSON line."""
    try:
        __import__(module)
    except ImportError:
        return f"{module} not installed (pip install -e '.[bench]')"
    return None


def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per contender")
    p.add_argument("--seed", type=int, default=0)
    return p


def count_matmuls(compiled: Any) -> int:
    """Number of matrix-matrix products in a compiled XLA module.

    A ``dot`` counts when its output is 2-D with both sides > 1; matrix-vector products
    (1-D outputs, or an ``[n,1]`` column as XLA sometimes writes them) do not.  Ops inside a ``while`` body
    (a ``lax.scan``) appear once, so for a scan this is the count per iteration plus
    whatever runs outside the loop.
    """
    shapes = re.findall(r"=\s*f\d+\[(\d+),(\d+)\]\{[^}]*\}\s*dot\(", compiled.as_text())
    return sum(1 for m, n in shapes if int(m) > 1 and int(n) > 1)


def load_binary_mnist(data_dir: str | None, quick_n: int | None = None) -> tuple[np.ndarray, str]:
    """Binarized (threshold 0.5) MNIST as float32 and a source note for the JSON line.

    Full runs read the 60k ``train_full`` IDX split from ``data_dir``; if that folder is
    absent the embedded 4000-image subset stands in and the note says so.  ``quick_n``
    takes the first ``quick_n`` embedded images (smoke runs).
    """
    from egm import data
    from egm.errors import DatasetNotFoundError

    if quick_n is not None:
        ds = data.load_mnist("train", source="embedded")
        x, note = ds.x[:quick_n], f"{ds.source} (first {quick_n}, --quick)"
    else:
        try:
            ds = data.load_mnist("train_full", source="idx", data_dir=data_dir)
            x, note = ds.x, ds.source
        except (DatasetNotFoundError, FileNotFoundError) as err:
            ds = data.load_mnist("train", source="embedded")
            x = ds.x
            note = (
                f"{ds.source} (FALLBACK: idx folder {data_dir!r} not usable: {type(err).__name__})"
            )
    return np.asarray(data.binarize_threshold(x), np.float32), note


# --------------------------------------------------------------------------- GEMM bound


class Product(NamedTuple):
    """One ``lax.dot_general`` of the traced program: operand shapes, dtype, dimension numbers."""

    lhs: tuple[int, ...]
    rhs: tuple[int, ...]
    dimension_numbers: Any
    dtype: Any

    def sizes(self) -> tuple[int, int, int, int]:
        """``(batch, m, k, n)``: a batch of (m x k) @ (k x n), free and contracted sizes multiplied."""
        (lc, rc), (lb, rb) = self.dimension_numbers
        size = lambda shape, dims: int(np.prod([shape[d] for d in dims], dtype=np.int64))
        free = lambda shape, used: [d for d in range(len(shape)) if d not in used]
        m = size(self.lhs, free(self.lhs, (*lc, *lb)))
        n = size(self.rhs, free(self.rhs, (*rc, *rb)))
        return size(self.lhs, lb), m, size(self.lhs, lc), n

    def describe(self) -> str:
        """``"[batch x] m x k x n"``."""
        b, m, k, n = self.sizes()
        return f"{b}x{m}x{k}x{n}" if self.dimension_numbers[1][0] else f"{m}x{k}x{n}"


_DOT = re.compile(r"%(\S+) = (\w+)\[([\d,]*)\]\{[^}]*\} dot\(([^)]*)\)(.*)")
_SHAPE = re.compile(r"%(\S+) = \w+\[([\d,]*)\]")
_DTYPES = {"f16": jnp.float16, "bf16": jnp.bfloat16, "f32": jnp.float32, "f64": jnp.float64}


def _dims(attrs: str, name: str) -> tuple[int, ...]:
    m = re.search(rf"{name}=\{{([\d,]*)\}}", attrs)
    return tuple(int(d) for d in m.group(1).split(",") if d) if m else ()


def hlo_products(compiled: Any) -> list[Product]:
    """The matrix-matrix products of a compiled XLA module (batched ones too, unlike
    :func:`count_matmuls`; matrix-vector products left out): operand shapes and dimension numbers read from the optimised HLO, so products
    XLA merged or removed as dead code are not there.  A product inside a ``while`` body
    (a ``lax.scan``) appears once: for a single scan, the products of one iteration (plus any
    outside the loop)."""
    text = compiled.as_text()
    shapes = {
        m.group(1): tuple(int(d) for d in m.group(2).split(",") if d) for m in _SHAPE.finditer(text)
    }
    out = []
    for m in _DOT.finditer(text):
        names = [tok.split()[-1].lstrip("%") for tok in m.group(4).split(", ")]
        attrs = m.group(5)
        dn = (
            (_dims(attrs, "lhs_contracting_dims"), _dims(attrs, "rhs_contracting_dims")),
            (_dims(attrs, "lhs_batch_dims"), _dims(attrs, "rhs_batch_dims")),
        )
        p = Product(shapes[names[0]], shapes[names[1]], dn, _DTYPES.get(m.group(2), jnp.float32))
        if min(p.sizes()[1::2]) > 1:  # m > 1 and n > 1: not a matrix-vector product
            out.append(p)
    return out


class GemmBound(NamedTuple):
    """A zero-argument ``go()`` timing the products alone, the compiled program, and what it does."""

    go: Callable[[], Any]
    compiled: Any
    products: list[Product]
    n_iter: int

    def describe(self) -> str:
        counts = Counter(p.describe() for p in self.products)
        each = ", ".join(f"{c} x ({s})" for s, c in counts.items())
        return f"{len(self.products)} products per iteration [{each}] x {self.n_iter} iterations"

    def record(self, bound_s: float, egm_s: float) -> dict[str, Any]:
        """JSON fields: ``gemm_bound_fraction`` = bound seconds / egm seconds (<= 1 unless
        noise; 1 would mean egm spends all its time in these products) and what was timed."""
        return {
            "gemm_bound_fraction": sig(bound_s / egm_s, 3),
            "gemm_bound_s": sig(bound_s, 3),
            "gemm_bound": self.describe() + " (jitted scan, no random draws)",
            "gemm_bound_products_in_hlo": len(hlo_products(self.compiled)),
        }


def make_gemm_bound(products: Sequence[Product], n_iter: int, seed: int = 0) -> GemmBound:
    """The GEMM bound of a loop: the same matrix products, alone, in a jitted ``lax.scan`` of
    ``n_iter`` iterations (no random draws, no other work).

    Operands are fixed random normals passed as arguments (no constant folding).  To keep
    XLA from hoisting loop-invariant products out of the scan, each iteration adds the
    scalar carry ``c`` to the smaller operand of every product, and ``c`` takes
    ``1e-30 * sum(outputs)``: an elementwise pass over one operand and one over each
    output, both small next to the product itself (O(mk) or O(kn) vs O(mkn)).  Time
    ``go()`` beside egm's call (e.g. as a contender of :func:`interleaved`); the bound's
    seconds over egm's are ``gemm_bound_fraction`` (:meth:`GemmBound.record`).
    """
    rng = np.random.default_rng(seed)
    ops = [
        (
            jnp.asarray(rng.standard_normal(p.lhs), p.dtype),
            jnp.asarray(rng.standard_normal(p.rhs), p.dtype),
        )
        for p in products
    ]
    dns = [p.dimension_numbers for p in products]

    def run(ops):
        def body(c, _):
            acc = jnp.zeros((), jnp.float32)
            for (a, b), dn in zip(ops, dns, strict=True):
                a, b = (
                    (a + c.astype(a.dtype), b) if a.size <= b.size else (a, b + c.astype(b.dtype))
                )
                acc = acc + jnp.sum(jax.lax.dot_general(a, b, dn), dtype=jnp.float32)
            return c + 1e-30 * acc, None

        return jax.lax.scan(body, jnp.zeros((), jnp.float32), None, length=n_iter)[0]

    compiled = jax.jit(run).lower(ops).compile()
    return GemmBound(lambda: jax.block_until_ready(compiled(ops)), compiled, list(products), n_iter)
