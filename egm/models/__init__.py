"""Flax (Linen) modules for directed and autoregressive nets, used as pure ``(apply_fn, params)``
pairs so they vmap over seeds and hyper-parameters like every energy in :mod:`egm.energies`."""
