"""Downloads with checksum verification, and safe reading of archive members.

Archives are read in place (members decoded straight from the zip), never extracted to disk;
:func:`safe_members` still refuses any member whose path would escape an extraction folder
(absolute, ``..``, drive letters, symbolic links), so a hostile archive is rejected whole.

Tests never call :func:`download`; they exercise the checksum and member checks on local files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from metalearn.data.cache import sha256_file


class ChecksumError(ValueError):
    """A downloaded or local file does not have the expected digest (bad input: a ValueError)."""


class UnsafeArchiveError(ValueError):
    """An archive member would escape the folder it is extracted to (bad input: a ValueError)."""


def md5_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex MD5 of a file (the digest the official Omniglot archives are published with)."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_md5(path: Path, expected: str, algorithm: str = "md5") -> None:
    """Raise :class:`ChecksumError` (and delete ``path``) when its digest is not ``expected``.

    Args:
        algorithm: ``md5`` (the Omniglot archives) or ``sha256`` (the text datasets' MANIFESTs).
    """
    actual = md5_file(path) if algorithm == "md5" else sha256_file(path)
    if actual != expected:
        path.unlink(missing_ok=True)
        raise ChecksumError(
            f"{path.name}: checksum mismatch (expected {algorithm} {expected}, got {actual}); the file was "
            "removed. Download it again, or place a good copy under the data root."
        )


def download(url: str, dest: Path, md5: str | None, *, quiet: bool = False, algorithm: str = "md5") -> Path:
    """Download ``url`` to ``dest`` through a ``.part`` file and verify its digest ``md5``
    (a SHA-256 hex digest with ``algorithm="sha256"``; ``None``: no published digest, not checked).

    Progress goes to stderr. On a checksum mismatch or an interrupted transfer the partial file
    is removed and nothing is left at ``dest``.

    Raises:
        ChecksumError: the digest differs (expected and actual digests in the message).
        PermissionError: ``dest``'s folder is not writable.
        urllib.error.URLError: the network failed (the message names the URL).
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PermissionError(f"cannot write to {dest.parent} ({e.strerror}): choose a writable data root") from e
    if not os.access(dest.parent, os.W_OK):
        raise PermissionError(f"data root {dest.parent} is not writable: choose a writable --data-root")
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while block := response.read(1 << 16):
                out.write(block)
                done += len(block)
                if not quiet and sys.stderr.isatty():
                    frac = f" {100 * done / total:5.1f}%" if total else ""
                    print(f"\rdownloading {dest.name}: {done / 1e6:7.1f} MB{frac}", end="", file=sys.stderr)
        if not quiet and sys.stderr.isatty():
            print(file=sys.stderr)
        if md5 is not None:
            verify_md5(part, md5, algorithm)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    shutil.move(part, dest)
    return dest


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return (info.external_attr >> 16) & 0o170000 == 0o120000


def safe_members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The archive's file members, after refusing any that would escape the extraction folder.

    Raises:
        UnsafeArchiveError: a member has an absolute path, a drive letter, a ``..`` component,
            or is a symbolic link (the message names the member).
    """
    members = []
    for info in archive.infolist():
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
            raise UnsafeArchiveError(
                f"{archive.filename}: member {name!r} would be written outside the target folder; "
                "refusing the archive. Get a clean copy from the official source."
            )
        if _is_symlink(info):
            raise UnsafeArchiveError(
                f"{archive.filename}: member {name!r} is a symbolic link; refusing the archive."
            )
        if not info.is_dir():
            members.append(info)
    return members

