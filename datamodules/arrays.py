"""Arrays larger than memory: a ``.npz`` archive converted once into uncompressed ``.npy`` files in a cache folder,
then read one row at a time, so a process holds only the rows it is using, whatever the dataset's size."""

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from datamodules.validation import DatasetError

CHUNK = 64 * 2**20  # bytes copied at a time while converting


def cache_root() -> Path:
    """``$MEDLAB_CACHE``, else ``~/.cache/medlab``."""
    root = os.environ.get("MEDLAB_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "medlab"


class NpyRows:
    """The rows of an uncompressed ``.npy`` file, read with ``os.pread`` when asked for.

    Not a memory map: the pages of a map that a process has read count in its resident memory until the kernel
    needs them back, so one epoch over a memory-mapped 3 GB array grows the process by 3 GB; read calls go through
    the page cache, which counts in no process. Safe in DataLoader workers (each opens the file itself) and under
    DDP, where each rank reads only the rows its sampler gives it.

    Args:
        path: an uncompressed, C-ordered ``.npy`` file.
        expand: add a trailing axis of length 1 to every row (``rows[..., None]``, as for an ndarray).
        source: what errors name (the archive and key the file was converted from); default: the file.
    """

    def __init__(self, path: Path, expand: bool = False, source: str | None = None) -> None:
        self.path, self.expand, self.source = Path(path), expand, source or str(path)
        with self.path.open("rb") as handle:
            version = np.lib.format.read_magic(handle)
            header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = header(handle)
            self.offset = handle.tell()
        if fortran or dtype.hasobject:
            got = "Fortran order" if fortran else dtype
            raise DatasetError(f"{self.source}: expected a C-ordered array of numbers, got {got}")
        self.dtype = dtype
        self.row_shape = tuple(shape[1:])
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * dtype.itemsize
        self.length = shape[0]
        expected = self.offset + self.length * self.row_bytes
        if self.path.stat().st_size != expected:
            raise DatasetError(f"{self.source}: {self.path.stat().st_size} bytes, expected {expected}; truncated?")
        self._descriptor: int | None = None
        self._pid = -1

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.length, *self.row_shape, *((1,) if self.expand else ()))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.length

    def _read(self, start: int, count: int) -> np.ndarray:
        if self._descriptor is None or self._pid != os.getpid():  # a forked worker opens its own
            self._descriptor, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        data = os.pread(self._descriptor, count * self.row_bytes, self.offset + start * self.row_bytes)
        rows = np.frombuffer(data, self.dtype).reshape(count, *self.row_shape)
        return rows[..., None] if self.expand else rows

    def __getitem__(self, key: int | tuple) -> "np.ndarray | NpyRows":
        if key == (Ellipsis, None):
            return NpyRows(self.path, expand=True, source=self.source)
        if isinstance(key, slice):
            start, stop, step = key.indices(self.length)
            if step == 1:
                return self._read(start, max(stop - start, 0))
        if isinstance(key, (int, np.integer)):
            index = int(key) + (self.length if key < 0 else 0)
            if not 0 <= index < self.length:
                raise IndexError(f"row {key} of {self.length} in {self.path}")
            return self._read(index, 1)[0]
        raise TypeError(f"{type(self).__name__} reads rows by index or by a slice, not {key!r}")

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        rows = self._read(0, self.length)
        return rows.astype(dtype) if dtype is not None else rows

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_descriptor": None, "_pid": -1}

    def __del__(self) -> None:
        if getattr(self, "_descriptor", None) is not None and self._pid == os.getpid():
            os.close(self._descriptor)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def cached_npz(path: Path, keys: list[str], root: Path | None = None) -> dict[str, NpyRows]:
    """``keys`` of the archive at ``path`` as ``NpyRows`` over uncompressed copies in
    ``<cache>/arrays/<name>-<hash of path>/``, converted the first time, streamed (never the whole array in memory),
    and again whenever the archive's size or modification time changes. ``source.json`` there records the archive's
    SHA-256. A conversion is written into a temporary folder and renamed into place, so a killed one leaves nothing
    half-written, and processes converting at once (DDP ranks) keep whichever copy landed first."""
    path = Path(path).resolve()
    folder = (root or cache_root()) / "arrays" / f"{path.stem}-{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    stat = path.stat()
    source = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    record = folder / "source.json"
    current = record.is_file() and {k: v for k, v in json.loads(record.read_text()).items() if k in source} == source
    if not current or any(not (folder / f"{key}.npy").is_file() for key in keys):
        convert_npz(path, keys, folder, source)
    return {key: NpyRows(folder / f"{key}.npy", source=f"{path}[{key}]") for key in keys}


def convert_npz(path: Path, keys: list[str], folder: Path, source: dict) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        with zipfile.ZipFile(path) as archive:
            for key in keys:
                with archive.open(f"{key}.npy") as member, (staging / f"{key}.npy").open("wb") as target:
                    shutil.copyfileobj(member, target, CHUNK)  # the .npy bytes as they are, header included
        (staging / "source.json").write_text(json.dumps({**source, "sha256": file_digest(path)}, indent=2))
        if folder.exists():  # out of date: replaced whole
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.rename(staging, folder)
        except OSError:  # another process landed its copy first
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
