"""Atomic file and folder writes, shared by every writer in the package (stdlib only).

Readers never see a partial output: a file is written to a temporary sibling and renamed
onto its destination (:func:`atomic_output`), a folder is built in a temporary sibling and
renamed into place (:func:`atomic_directory`). If the writer fails, the temporary is
deleted and the destination is left as it was.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["atomic_directory", "atomic_output", "atomic_write"]

PathLike = str | os.PathLike


def _temp_name(path: Path, tag: str) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.{tag}")


def _check_parent(path: Path) -> None:
    """The parent of ``path`` must be an existing folder (a file there is named as such)."""
    if path.parent.is_dir():
        return
    blocker = next((p for p in path.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise NotADirectoryError(f"cannot write {path}: {blocker} is a file, not a folder")
    raise FileNotFoundError(f"cannot write {path}: directory {path.parent} does not exist; create it first")


@contextlib.contextmanager
def atomic_output(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path`` atomically.

    The temporary file lives in the same directory, so :func:`os.replace` is an atomic
    rename: readers see the old file or the complete new one, never a partial write. If
    the body raises, the temporary file is deleted and ``path`` is left untouched.

    Raises:
        FileNotFoundError: the parent folder does not exist.
        NotADirectoryError: a file stands where a parent folder should be.
        IsADirectoryError: ``path`` is a folder.
        PermissionError (or another OSError): the folder is not writable; the message
            names ``path``, not the temporary file.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "out.txt"
        >>> with atomic_output(target) as tmp:
        ...     _ = tmp.write_text("done")
        >>> target.read_text()
        'done'
    """
    path = Path(path)
    _check_parent(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a directory")
    tmp = _temp_name(path, "tmp")
    # Create through os.open with 0o666 so the final file gets the usual umask
    # permissions (mkstemp would leave it 0o600).
    try:
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    except OSError as e:
        raise type(e)(e.errno, f"cannot write {path}: {e.strerror} in {path.parent}; choose a writable folder"
                      ) from None
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())  # data on disk before the rename makes it visible
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: PathLike, write_fn: Callable[[Path], None]) -> Path:
    """Call ``write_fn(tmp_path)`` and move the result onto ``path`` atomically (see :func:`atomic_output`)."""
    with atomic_output(path) as tmp:
        write_fn(tmp)
    return Path(path)


@contextlib.contextmanager
def atomic_directory(path: PathLike, overwrite: bool = False, make_parents: bool = True) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``path``; on success rename it to ``path``.

    An existing ``path`` is refused unless ``overwrite``; then it is moved aside, the new
    folder renamed in, and the old one deleted, so ``path`` is never missing or mixed. If
    the body raises, the temporary folder is deleted, ``path`` is untouched, and parents
    this call created are removed again.

    Args:
        path: destination folder.
        overwrite: replace an existing folder at ``path``.
        make_parents: create missing parent folders (removed again on failure).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        NotADirectoryError: ``path`` or one of its parents is a file.
        FileNotFoundError: a parent is missing and ``make_parents`` is False.
        PermissionError (or another OSError): a folder on the way is not writable.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "tree"
        >>> with atomic_directory(target) as tmp:
        ...     _ = (tmp / "a.txt").write_text("a")
        >>> sorted(p.name for p in target.iterdir())
        ['a.txt']
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; choose another destination or allow overwriting it")
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"cannot replace {path} with a folder: it is a file")
    created = _make_parents(path, make_parents)  # innermost first
    tmp = _temp_name(path, "tmpdir")
    try:
        tmp.mkdir()
    except OSError as e:
        _remove_empty(created)
        raise type(e)(e.errno, f"cannot write {path}: {e.strerror} in {path.parent}; choose a writable folder"
                      ) from None
    try:
        yield tmp
        _fsync_tree(tmp)  # files on disk before the rename makes the folder visible
        if path.exists():
            old = _temp_name(path, "old")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(created)
        raise


def _fsync_tree(folder: Path) -> None:
    """``fsync`` every file and folder under ``folder`` (deepest first), then ``folder`` itself."""
    for item in sorted(folder.rglob("*"), key=lambda p: -len(p.parts)) + [folder]:
        if item.is_symlink():
            continue
        fd = os.open(item, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _make_parents(path: Path, make_parents: bool) -> list[Path]:
    """Create the missing parent folders of ``path`` (outermost first); return them innermost
    first. On failure, those created are removed again."""
    created: list[Path] = []
    parent = path.parent
    while not parent.exists():
        if not make_parents:
            raise FileNotFoundError(f"cannot write {path}: directory {path.parent} does not exist; create it first")
        created.append(parent)
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"cannot write {path}: {parent} is a file, not a folder")
    for k, p in enumerate(reversed(created)):
        try:
            p.mkdir()
        except OSError as e:
            _remove_empty(created[len(created) - k:])  # those made so far
            raise type(e)(e.errno, f"cannot create {p} for {path}: {e.strerror}") from None
    return created


def _remove_empty(folders: list[Path]) -> None:
    """Remove each of ``folders`` (innermost first) if it is still empty."""
    for p in folders:
        with contextlib.suppress(OSError):
            p.rmdir()
