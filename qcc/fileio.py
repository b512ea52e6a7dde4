"""Every file and folder qcc writes goes through here.

1. A file is written to a temporary file in the target's own folder, then renamed
   over the target (`os.replace`): a reader sees the old file or the new one, never
   half of one, and an interrupted write leaves only the old file.
2. A folder is filled as a temporary folder beside the target, then renamed into
   place; an existing folder is swapped out and removed only after the swap.
3. A target of another kind is never replaced: a file where a folder is to go (or
   a folder where a file is to go) is an `OutputError`, as are a missing parent
   folder and a folder qcc may not write to. `check_output` makes the same checks
   up front, so a command fails before it computes anything.

Nothing is written to the system's temporary folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from qcc.errors import QccError


class OutputError(QccError):
    """An output path qcc cannot write; printed as one message."""


def _parent(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


def check_output(path: str | os.PathLike, kind: str = "file") -> Path:
    """Fail now, with one message, if `path` cannot become a `kind` ("file" or
    "folder"): its parent folder is missing or read-only, or `path` exists as the
    other kind. Returns `path` as a Path."""
    path = Path(path)
    parent = _parent(path)
    if not parent.is_dir():
        raise OutputError(f"{path}: the folder '{parent}' does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: the folder '{parent}' is not writable; "
                          "choose another output path")
    if kind == "file" and path.is_dir():
        raise OutputError(f"{path}: is a folder, not a file; qcc does not replace a "
                          "folder by a file (remove it or choose another name)")
    if kind == "folder" and path.is_dir() and (
            path.resolve() == Path.cwd().resolve() or path.resolve() in Path.cwd().parents):
        raise OutputError(f"{path}: is the current folder (or holds it); qcc replaces an "
                          "output folder as a whole: name a folder of its own")
    if kind == "folder" and path.exists() and not path.is_dir():
        raise OutputError(f"{path}: is a file, not a folder; qcc does not replace a "
                          "file by a folder (remove it or choose another name)")
    return path


def check_holds_no_input(final: Path, inputs: Iterable[object]) -> None:
    """Fail if the output folder `final` holds one of the job's input files (a path
    in `inputs`; other entries are ignored): the folder is replaced as a whole, which
    would delete them."""
    if not final.is_dir():
        return
    root = final.resolve()
    for item in inputs:
        if not isinstance(item, str | os.PathLike):
            continue
        path = Path(item)
        if not path.exists():
            continue
        if root in path.resolve().parents:
            raise OutputError(f"{final}: holds the input {path}; qcc replaces an output "
                              "folder as a whole, which would delete it: name a folder "
                              "of its own")


def write_file(path: str | os.PathLike,
               data: bytes | str | Iterable[bytes] | Callable[[Path], None]) -> None:
    """Write `path` atomically. `data` is the content (bytes, text, or chunks of
    bytes) or a function that writes the content to the temporary path it is given."""
    path = check_output(path, "file")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=_parent(path))
    except OSError as e:
        raise OutputError(f"{path}: cannot write: {e.strerror or e}") from None
    tmp = Path(name)
    try:
        if callable(data):
            os.close(fd)
            data(tmp)
        else:
            with os.fdopen(fd, "wb") as f:
                if isinstance(data, str):
                    f.write(data.encode())
                elif isinstance(data, bytes | bytearray | memoryview):
                    f.write(data)
                else:
                    for chunk in data:
                        f.write(chunk)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as e:
        raise OutputError(f"{path}: cannot write: {e.strerror or e}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def new_folder(final: str | os.PathLike) -> Path:
    """A temporary folder beside `final` to fill; `commit_folder` moves it into place,
    `discard_folder` removes it."""
    final = check_output(final, "folder")
    try:
        work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp",
                                     dir=_parent(final)))
    except OSError as e:
        raise OutputError(f"{final}: cannot write: {e.strerror or e}") from None
    os.chmod(work, 0o777 & ~_umask())
    return work


def commit_folder(work: Path, final: str | os.PathLike) -> None:
    """Replace `final` by `work`; an existing folder `final` is removed only after
    the swap."""
    final = check_output(final, "folder")
    old = None
    try:
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old",
                                        dir=_parent(final)))
            os.replace(final, old / final.name)
        os.replace(work, final)
    except OSError as e:
        if old is not None and (old / final.name).exists() and not final.exists():
            os.replace(old / final.name, final)
        raise OutputError(f"{final}: cannot write: {e.strerror or e}") from None
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def discard_folder(work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)


@contextmanager
def write_folder(final: str | os.PathLike) -> Iterator[Path]:
    """`with write_folder(out) as work:` fill `work`; it replaces `out` only when
    the block ends without an exception."""
    work = new_folder(final)
    try:
        yield work
        commit_folder(work, final)
    finally:
        discard_folder(work)


class DataFileError(QccError):
    """An input data file qcc cannot read; printed as one message."""


def read_npz(path: str | os.PathLike, what: str = "input") -> dict[str, np.ndarray]:
    """The arrays of an `.npz` file by key. A missing file, a file that is not an
    `.npz` archive, a damaged archive and arrays of Python objects (which would need
    pickle) are a `DataFileError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: no such {what} data file")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:2] != b"PK":
        raise DataFileError(f"{path}: not an .npz file (a zip archive of .npy arrays, as "
                            f"numpy.savez writes); cannot read the {what} data")
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            for key in npz.files:
                try:
                    arrays[key] = npz[key]
                except ValueError as e:
                    if "allow_pickle" in str(e) or "Object arrays" in str(e):
                        raise DataFileError(
                            f"{path}: array '{key}' holds Python objects (pickled data); "
                            "save numeric arrays") from None
                    raise
    except DataFileError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, RuntimeError) as e:
        raise DataFileError(f"{path}: damaged .npz file, cannot read the {what} data "
                            f"({type(e).__name__}: {e})") from None
    return arrays
