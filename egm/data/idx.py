"""Reader for the IDX format of the MNIST files (LeCun et al.), plain or gzipped.

An IDX file is a 4-byte magic number ``0x00 0x00 <type> <ndim>``, then ``ndim``
big-endian uint32 dimension sizes, then the values in C order (big-endian for
multi-byte types). MNIST images have magic 2051 (``0x00000803``: uint8, 3 dims
``N x 28 x 28``) and labels 2049 (``0x00000801``: uint8, 1 dim ``N``).

The parser is plain numpy (nothing is unpickled or executed) and checks the magic
number, the header and the exact length, so a truncated or corrupt file raises
:class:`egm.errors.CorruptFileError` instead of yielding wrong data.
"""

from __future__ import annotations

import functools
import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from egm.errors import CorruptFileError, DatasetNotFoundError

__all__ = ["IDX_IMAGES_MAGIC", "IDX_LABELS_MAGIC", "read_idx"]

IDX_IMAGES_MAGIC = 2051
"""Magic number of an MNIST image file: uint8, 3 dimensions."""
IDX_LABELS_MAGIC = 2049
"""Magic number of an MNIST label file: uint8, 1 dimension."""

_GZIP_MAGIC = b"\x1f\x8b"
_IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike[str], expect_magic: int | None = None) -> np.ndarray:
    """Parse an IDX file (gzip-compressed or not) into a read-only numpy array.

    Results are cached in-process on (path, modification time, size), so loading
    the same file again is free; the array is read-only because it is shared.

    Args:
      path: the file; gzip is detected from its content, not its name.
      expect_magic: if given, the magic number the file must have (e.g.
        :data:`IDX_IMAGES_MAGIC`).

    Returns:
      the array with the shape and dtype the header declares.

    Raises:
      DatasetNotFoundError: if the file does not exist.
      CorruptFileError: bad gzip stream, truncated or overlong data, bad magic number.
    """
    p = Path(path).expanduser().resolve()
    try:
        st = p.stat()
    except FileNotFoundError:
        raise DatasetNotFoundError(f"IDX file {p} does not exist") from None
    return _read_idx_cached(str(p), st.st_mtime_ns, st.st_size, expect_magic)


@functools.lru_cache(maxsize=32)
def _read_idx_cached(path: str, mtime_ns: int, size: int, expect_magic: int | None) -> np.ndarray:
    """Parse ``path``; the stat fields only key the cache, so edited files are re-read."""
    del mtime_ns, size
    raw = _read_bytes(Path(path))
    return _parse_idx(raw, path, expect_magic)


def _read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when it starts with the gzip magic bytes."""
    data = path.read_bytes()
    if data[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(data)
        except EOFError as e:
            raise CorruptFileError(
                f"{path}: gzip stream is truncated ({len(data)} bytes on disk; {e}); "
                "download or copy the file again"
            ) from e
        except (gzip.BadGzipFile, zlib.error, OSError) as e:
            raise CorruptFileError(
                f"{path}: not a valid gzip file ({e}); download or copy the file again"
            ) from e
    if path.suffix == ".gz":
        raise CorruptFileError(
            f"{path}: named .gz but does not start with the gzip magic bytes 1f 8b "
            f"(starts with {data[:4].hex(' ') or 'nothing: the file is empty'})"
        )
    return data


def _parse_idx(raw: bytes, path: str, expect_magic: int | None) -> np.ndarray:
    """Check the header and length of an uncompressed IDX buffer and wrap it as an array."""
    if len(raw) < 4:
        raise CorruptFileError(f"{path}: {len(raw)} bytes, too short for an IDX header")
    magic = int.from_bytes(raw[:4], "big")
    zero, type_code, ndim = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
    if expect_magic is not None and magic != expect_magic:
        raise CorruptFileError(
            f"{path}: bad magic number {magic} (0x{magic:08x}); expected {expect_magic} "
            f"(0x{expect_magic:08x}) — not an IDX file of the expected kind"
        )
    if zero != 0 or type_code not in _IDX_TYPES or ndim == 0:
        raise CorruptFileError(f"{path}: bad magic number {magic} (0x{magic:08x}); not an IDX file")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise CorruptFileError(f"{path}: truncated IDX header ({len(raw)} of {header} bytes)")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_TYPES[type_code]
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "has trailing bytes"
        raise CorruptFileError(
            f"{path}: {what}: header declares shape {dims} of {dtype.name} "
            f"({expected} bytes with the header), but the data holds {len(raw)} bytes"
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    if dtype.byteorder == ">":
        arr = arr.astype(dtype.newbyteorder("="))
    arr.flags.writeable = False
    return arr
