"""Where data lives and how decoded arrays are cached.

Raw data (archives, image folders) lives under the *data root*: an explicit ``root`` argument,
else the ``METALEARN_DATA`` environment variable, else ``~/.cache/metalearn``. Decoded arrays
are cached once, as ``.npy`` plus a JSON sidecar, under the *cache dir*: an explicit
``cache_dir``, else ``METALEARN_CACHE``, else ``<data root>/cache`` (or ``~/.cache/metalearn/cache``
when the data root is read-only, as a shared dataset folder often is). The cache key is a content
hash of the source and the decoding settings, so a changed source or setting never reuses a
stale cache. The sidecar records the array's size and SHA-256; a cache file that is truncated
or does not match is rebuilt, never trusted. Writes are atomic (temporary file, fsync, rename).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

CACHE_VERSION = 1
DEFAULT_ROOT = Path("~/.cache/metalearn")


def data_root(root: str | os.PathLike | None = None, *, must_exist: bool = False) -> Path:
    """Resolve the data root: ``root``, else ``$METALEARN_DATA``, else ``~/.cache/metalearn``.

    Raises:
        FileNotFoundError: if ``must_exist`` and the folder does not exist.
        NotADirectoryError: if the path exists but is a file.
    """
    chosen = root if root is not None else os.environ.get("METALEARN_DATA") or DEFAULT_ROOT
    path = Path(chosen).expanduser()
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"data root {path} is a file; pass a folder (--data-root DIR)")
    if must_exist and not path.is_dir():
        raise FileNotFoundError(
            f"data root {path} does not exist: create it, or point --data-root / METALEARN_DATA "
            "at the folder that holds the datasets"
        )
    return path


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & 0o222)


def cache_dir(cache: str | os.PathLike | None = None, root: str | os.PathLike | None = None) -> Path:
    """Resolve (and create) the cache dir: ``cache``, else ``$METALEARN_CACHE``, else ``<root>/cache``
    (``~/.cache/metalearn/cache`` when the data root is read-only).

    Raises:
        PermissionError: if the folder cannot be created or written (names the variable to set).
    """
    chosen = cache if cache is not None else os.environ.get("METALEARN_CACHE")
    if chosen:
        path = Path(chosen).expanduser()
    else:
        base = data_root(root)
        # A read-only data root (a shared dataset mount) keeps its archives; the cache then goes
        # to the user's cache folder. Mode bits are checked too: root passes os.access anyway.
        path = (base / "cache" if _writable(base) or not base.exists()
                else DEFAULT_ROOT.expanduser() / "cache")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PermissionError(
            f"cannot create the cache folder {path} ({e.strerror}): set METALEARN_CACHE or pass "
            "cache_dir= to a writable folder"
        ) from e
    if not _writable(path):
        raise PermissionError(
            f"the cache folder {path} is not writable: set METALEARN_CACHE or pass cache_dir= "
            "to a writable folder"
        )
    return path


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write(path: Path, write: Callable[[object], None], mode: str = "wb") -> None:
    """Write a file atomically: ``write(fileobj)`` into a temporary file, fsync, then rename.

    A reader never sees a half-written ``path``; a crash leaves at most a stray ``.tmp`` file.

    Raises:
        OSError: the disk is full (``errno.ENOSPC``; also NumPy's short writes) or read-only,
            with the free space and the fix (``METALEARN_CACHE``) in the message.
    """
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and (e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
                                       or (e.errno is None and "requested and" in str(e))):
            code = errno.EROFS if e.errno == errno.EROFS else errno.ENOSPC
            free = shutil.disk_usage(path.parent if path.parent.exists() else Path(path.anchor)).free
            raise OSError(code, f"{'read-only file system' if code == errno.EROFS else 'no space left'} "
                          f"writing {path} ({free / 2**20:.1f} MiB free there): free space, or set "
                          "METALEARN_CACHE (or cache=) to a folder on a disk with room") from e
        raise


class ArrayCache:
    """One cached array plus JSON metadata, keyed by a content hash.

    ``load()`` returns ``(array, meta)`` with the array memory-mapped read-only, or ``None``
    when the entry is missing, truncated or stale (a warning says which, and the entry is
    rebuilt by the caller with ``save``).
    """

    def __init__(self, folder: Path, name: str, key: str):
        self.array_path = folder / f"{name}-{key[:20]}.npy"
        self.meta_path = folder / f"{name}-{key[:20]}.json"
        self.key = key

    def load(self) -> tuple[np.ndarray, dict] | None:
        if not self.meta_path.exists():
            return None
        try:
            meta = json.loads(self.meta_path.read_text())
            if meta.get("version") != CACHE_VERSION or meta.get("key") != self.key:
                warnings.warn(f"stale cache {self.meta_path.name}: rebuilding it", stacklevel=3)
                return None
            if self.array_path.stat().st_size != meta["nbytes"]:
                warnings.warn(
                    f"cache file {self.array_path} is truncated or was changed "
                    f"({self.array_path.stat().st_size} bytes, expected {meta['nbytes']}): rebuilding it",
                    stacklevel=3,
                )
                return None
            if sha256_file(self.array_path) != meta["sha256"]:
                warnings.warn(
                    f"cache file {self.array_path} does not match its checksum: rebuilding it",
                    stacklevel=3,
                )
                return None
            array = np.load(self.array_path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
            warnings.warn(f"unreadable cache {self.meta_path.name} ({e}): rebuilding it", stacklevel=3)
            return None
        return array, meta

    def save(self, array: np.ndarray, meta: dict) -> np.ndarray:
        """Write ``array`` then its metadata (atomically, in that order); return it memory-mapped."""
        atomic_write(self.array_path, lambda f: np.save(f, np.ascontiguousarray(array), allow_pickle=False))
        meta = dict(meta, version=CACHE_VERSION, key=self.key,
                    nbytes=self.array_path.stat().st_size, sha256=sha256_file(self.array_path))
        atomic_write(self.meta_path, lambda f: f.write(json.dumps(meta, indent=1)), mode="w")
        return np.load(self.array_path, mmap_mode="r", allow_pickle=False)
