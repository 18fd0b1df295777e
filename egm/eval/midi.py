"""Piano rolls to MIDI files through pretty_midi (optional extra ``midi``: ``pip install
egm[midi]``).

A roll ``(T, 88)`` has key ``i`` = MIDI note ``21 + i`` (:mod:`egm.data.polyphonic`); a note
that sounds in consecutive frames is held (one note-on, one note-off).
"""

from __future__ import annotations

import importlib.util

import numpy as np
from jaxtyping import Array, Float

from egm.errors import ConfigError, DataError

LOWEST_NOTE = 21


def available() -> bool:
    """Whether pretty_midi is installed."""
    return importlib.util.find_spec("pretty_midi") is not None


def note_events(roll: Float[Array, "T 88"]) -> list[tuple[int, int, int]]:
    """``(midi_note, start_frame, end_frame)`` of every held note of a binary roll."""
    r = np.asarray(roll) > 0.5
    if r.ndim != 2 or r.shape[1] != 88:
        raise DataError(f"a piano roll must have shape (T, 88), got {r.shape}")
    padded = np.pad(r, ((1, 1), (0, 0))).astype(np.int8)
    d = np.diff(padded, axis=0)
    events = []
    for key in range(88):
        on, off = np.flatnonzero(d[:, key] == 1), np.flatnonzero(d[:, key] == -1)
        events += [(LOWEST_NOTE + key, int(a), int(b)) for a, b in zip(on, off, strict=True)]
    return sorted(events, key=lambda e: (e[1], e[0]))


def write_midi(
    roll: Float[Array, "T 88"], path: str, *, seconds_per_step: float = 0.5, program: int = 0
) -> None:
    """Write a binary piano roll as a one-instrument MIDI file (a quarter note per frame at
    ``seconds_per_step``, 120 bpm by default)."""
    if not available():
        raise ConfigError(
            "writing MIDI needs pretty_midi: pip install 'egm[midi]' (or pretty_midi)"
        )
    import pretty_midi

    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=program)
    for note, a, b in note_events(roll):
        inst.notes.append(
            pretty_midi.Note(
                velocity=80, pitch=note, start=a * seconds_per_step, end=b * seconds_per_step
            )  # fmt: skip
        )
    pm.instruments.append(inst)
    pm.write(str(path))
