"""Straightforward PyTorch NADE, written for the benchmark (the only place egm touches torch).

Two forms of the same model (Larochelle & Murray 2011, Bernoulli outputs, identity ordering):

* ``"loop"``: the textbook O(DH) algorithm, a Python loop over the ``D`` units carrying the
  running sum ``a`` ([B, H]); autograd differentiates the loop.
* ``"cumsum"``: vectorised, the hidden pre-activations of all units at once as an exclusive
  ``torch.cumsum`` of ``x_d W_d`` over ``d`` ([B, D, H] in memory).

Both are float32 and take their parameters from egm's NADE (same numbers, so the
log-likelihoods can be compared).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


class TorchNADE(torch.nn.Module):
    def __init__(self, W: np.ndarray, c: np.ndarray, V: np.ndarray, b: np.ndarray, form: str):
        super().__init__()
        if form not in ("loop", "cumsum"):
            raise ValueError(f"form must be 'loop' or 'cumsum', got {form!r}")
        t = lambda a: torch.nn.Parameter(torch.tensor(np.asarray(a), dtype=torch.float32))  # noqa: E731
        self.W, self.c, self.V, self.b = t(W), t(c), t(V), t(b)
        self.form = form

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.form == "cumsum":
            t = x[:, :, None] * self.W[None]  # [B, D, H]
            a = self.c + torch.cumsum(t, dim=1) - t  # exclusive running sum
            return (torch.sigmoid(a) * self.V[None]).sum(-1) + self.b
        B, D = x.shape
        a = self.c.expand(B, -1)
        out = []
        for d in range(D):
            out.append(torch.sigmoid(a) @ self.V[d] + self.b[d])
            a = a + x[:, d : d + 1] * self.W[d]
        return torch.stack(out, dim=1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        l = self.logits(x)
        return (x * F.logsigmoid(l) + (1 - x) * F.logsigmoid(-l)).sum(-1)


def make(params: dict, form: str, threads: int | None = None) -> TorchNADE:
    if threads:
        torch.set_num_threads(threads)
    p = params["params"]
    return TorchNADE(p["W"], p["c"], p["V"], p["b"], form)


def eval_fn(model: TorchNADE, x: np.ndarray, chunk: int):
    xt = torch.tensor(x, dtype=torch.float32)

    def go():
        with torch.no_grad():
            return torch.cat([model.log_prob(xt[i : i + chunk]) for i in range(0, len(xt), chunk)])

    return go


def epoch_fn(model: TorchNADE, x: np.ndarray, batch_size: int, lr: float, seed: int):
    """One epoch of Adam on the mean NLL over shuffled minibatches (remainder dropped)."""
    xt = torch.tensor(x, dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n = (len(xt) // batch_size) * batch_size

    def go():
        perm = torch.randperm(len(xt), generator=gen)[:n].view(-1, batch_size)
        for idx in perm:
            opt.zero_grad(set_to_none=True)
            loss = -model.log_prob(xt[idx]).mean()
            loss.backward()
            opt.step()
        return float(loss)

    return go
