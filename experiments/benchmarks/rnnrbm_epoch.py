"""RNN-RBM training epoch on JSB Chorales: egm vs a plain PyTorch RNN-RBM, same run.

    python experiments/benchmarks/rnnrbm_epoch.py            # 229 chorales, 88-150-100, CD-15
    python experiments/benchmarks/rnnrbm_epoch.py --quick    # tiny smoke run

Like for like: the RNN-RBM of Boulanger-Lewandowski et al. (2012) with the deeplearning.net
tutorial's sizes (150 hidden, 100 recurrent units, CD-15), minibatches of 10 padded, masked
chorales, Adam (lr 1e-3), float32; one epoch = every training chorale once.

* egm: :func:`egm.models.rnn_rbm.sequence_objective` with :func:`egm.train.make_step`, one
  epoch = one jitted ``lax.scan`` (the RNN a ``lax.scan`` over time, all frames' Gibbs chains
  in parallel, the gradient by back-propagation through time).
* torch (peer): the same computation written the straightforward way, as the Theano
  tutorial does it: a Python loop over time for the RNN, the frames' Gibbs chains batched,
  the free-energy-difference cost, ``backward()`` and ``torch.optim.Adam``.

Seconds per epoch (lower is better); ratio = torch / egm.  Recorded, no target.
"""

from __future__ import annotations

import _bench  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from egm.data import polyphonic  # noqa: E402
from egm.models import rnn_rbm as seq  # noqa: E402
from egm.train import adam, epoch_key, init_state, make_epoch, make_step  # noqa: E402

FULL = dict(n_hidden=150, n_recurrent=100, k=15, batch=10, repeats=3, n_pieces=None)
QUICK = dict(n_hidden=16, n_recurrent=8, k=2, batch=4, repeats=1, n_pieces=8)


def make_egm_epoch(rolls, mask, s, seed):
    p = seq.rnn_rbm_init(jax.random.key(seed), 88, s["n_hidden"], s["n_recurrent"])
    opt = adam(1e-3)
    epoch = jax.jit(make_epoch(make_step(seq.sequence_objective(s["k"]), opt), s["batch"]),
                    donate_argnums=0)  # fmt: skip
    data = {"rolls": jnp.asarray(rolls), "mask": jnp.asarray(mask)}
    box = {"state": init_state(p, opt), "i": 0}
    root = jax.random.key(seed + 1)

    def go():
        state, m = epoch(box["state"], data, epoch_key(root, box["i"]))
        box["state"], box["i"] = state, box["i"] + 1
        return jax.block_until_ready((state, m))

    return go


def make_torch_epoch(rolls, mask, s, seed):
    import torch

    torch.manual_seed(seed)
    V, H, U, k = 88, s["n_hidden"], s["n_recurrent"], s["k"]
    g = lambda *shape: torch.nn.Parameter(0.01 * torch.randn(*shape))
    z = lambda n: torch.nn.Parameter(torch.zeros(n))
    W, W_uv, W_uh, W_vu, W_uu = g(V, H), g(U, V), g(U, H), g(V, U), g(U, U)
    b_v, b_h, b_u, u0 = z(V), z(H), z(U), z(U)
    params = [W, b_v, b_h, W_uv, W_uh, W_vu, W_uu, b_u, u0]
    opt = torch.optim.Adam(params, lr=1e-3)
    R, M = torch.from_numpy(rolls), torch.from_numpy(mask)

    def free_energy(v, bv, bh):
        return -(v * bv).sum(-1) - torch.nn.functional.softplus(bh + v @ W).sum(-1)

    def go():
        perm = torch.randperm(R.shape[0])
        for i in range(0, R.shape[0] - s["batch"] + 1, s["batch"]):
            v, m = R[perm[i : i + s["batch"]]], M[perm[i : i + s["batch"]]]
            u, before = u0.expand(v.shape[0], U), []
            for t in range(v.shape[1]):  # the RNN, step by step
                before.append(u)
                u = torch.tanh(b_u + u @ W_uu + v[:, t] @ W_vu)
            u = torch.stack(before, 1)
            bv, bh = b_v + u @ W_uv, b_h + u @ W_uh
            with torch.no_grad():
                neg = v
                for _ in range(k):
                    h = torch.bernoulli(torch.sigmoid(bh + neg @ W))
                    neg = torch.bernoulli(torch.sigmoid(bv + h @ W.T))
            cost = ((free_energy(v, bv, bh) - free_energy(neg, bv, bh)) * m).sum() / m.sum()
            opt.zero_grad()
            cost.backward()
            opt.step()

    return go


def main() -> None:
    args = _bench.base_parser(__doc__.splitlines()[0]).parse_args()
    s = dict(QUICK if args.quick else FULL)
    env = _bench.environment()  # before the work: the background load
    tr = polyphonic.load_polyphonic("jsb").splits["train"]
    n = s["n_pieces"] or len(tr.lengths)
    rolls, mask = tr.rolls[:n], tr.mask[:n]
    with _bench.rng_mode():
        contenders = {"egm": make_egm_epoch(rolls, mask, s, args.seed)}
        missing = _bench.peer_available("torch")
        if missing is None:
            contenders["torch"] = make_torch_epoch(rolls, mask, s, args.seed)
        times = _bench.interleaved(contenders, args.repeats or s["repeats"])
    egm_s = _bench.median(times["egm"])
    peer_s = _bench.median(times["torch"]) if "torch" in times else None
    _bench.emit(
        _bench.seconds_line(
            f"rnnrbm_epoch_jsb_88x{s['n_hidden']}x{s['n_recurrent']}_cd{s['k']}",
            egm=egm_s,
            peer="torch" if peer_s else None,
            peer_value=peer_s,
            stat="median seconds per training epoch",
            target="recorded (no target)",
            target_met=None,
            quick=bool(args.quick),
            pieces=n,
            frames=int(mask.sum()),
            egm_runs=_bench.runs(times["egm"]),
            peer_runs=_bench.runs(times.get("torch", [])),
            skipped_peer=missing,
            **env,
        )  # fmt: skip
    )


if __name__ == "__main__":
    main()
