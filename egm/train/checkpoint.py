"""Orbax checkpoints of train states, with resume.

A checkpoint at epoch ``e`` holds the full train state after that epoch.  Because epoch
keys are ``fold_in(root, e)`` (:func:`egm.train.loop.epoch_key`), resuming from it and
running the remaining epochs reproduces an uninterrupted run bit for bit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax

from egm.errors import CorruptFileError


class Checkpointer:
    """Save the train state every ``every`` epochs (and the last), keep the newest ``keep``."""

    def __init__(self, directory: str | Path, *, every: int = 1, keep: int = 2):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.directory = Path(directory).resolve()
        self.every = max(1, int(every))
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        )

    def save(self, epoch: int, state: Any, *, force: bool = False) -> None:
        """Save ``state`` as the checkpoint of epoch ``epoch`` if it is due."""
        if force or (epoch + 1) % self.every == 0:
            self._manager.save(epoch, args=self._ocp.args.StandardSave(state), force=True)

    def wait(self) -> None:
        """Block until asynchronous saves are on disk."""
        self._manager.wait_until_finished()

    def latest_epoch(self) -> int | None:
        """The epoch of the newest checkpoint, or ``None`` if there is none."""
        return self._manager.latest_step()

    def restore(self, like: Any, epoch: int | None = None) -> tuple[int, Any]:
        """Restore the checkpoint of ``epoch`` (default: newest) into the structure of ``like``.

        Returns ``(epoch, state)``.  A missing or unreadable checkpoint raises
        :class:`CorruptFileError` saying which directory and how to start afresh.
        """
        epoch = self.latest_epoch() if epoch is None else epoch
        if epoch is None:
            raise CorruptFileError(f"no checkpoint found in {self.directory}")
        abstract = jax.tree_util.tree_map(self._ocp.utils.to_shape_dtype_struct, like)
        try:
            state = self._manager.restore(epoch, args=self._ocp.args.StandardRestore(abstract))
        except Exception as e:  # orbax raises many kinds; all mean the same to a user
            raise CorruptFileError(
                f"could not restore the checkpoint of epoch {epoch} from {self.directory}: "
                f"{type(e).__name__}: {e}. The files are damaged or were written by a run with a "
                f"different configuration; delete that directory (or use a new work dir) to "
                f"start afresh."
            ) from e
        return epoch, state

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
