"""Atomic folder writes (the file writes are covered in test_chem_io.py)."""
from pathlib import Path

import pytest

from dit3d.fileio import atomic_directory


def test_atomic_directory_success_failure_and_overwrite(tmp_path):
    target = tmp_path / "a" / "b" / "tree"
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "half.txt").write_text("x")
            raise RuntimeError("writer failed")
    assert list(tmp_path.iterdir()) == []  # no tree, no temporary, and the parents it made are gone
    with atomic_directory(target) as tmp:
        (tmp / "v1.txt").write_text("1")
    assert [p.name for p in target.iterdir()] == ["v1.txt"]
    with pytest.raises(FileExistsError, match="already exists"):
        with atomic_directory(target):
            pass
    with pytest.raises(RuntimeError):
        with atomic_directory(target, overwrite=True) as tmp:
            raise RuntimeError
    assert [p.name for p in target.iterdir()] == ["v1.txt"]  # the old tree survives a failed overwrite
    with atomic_directory(target, overwrite=True) as tmp:
        (tmp / "v2.txt").write_text("2")
    assert [p.name for p in target.iterdir()] == ["v2.txt"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["tree"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        with atomic_directory(tmp_path / "x" / "y", make_parents=False):
            pass
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError):
        with atomic_directory(tmp_path / "file", overwrite=True):
            pass



def test_a_failed_parent_mkdir_removes_the_parents_made_before_it(tmp_path, monkeypatch):
    real_mkdir = Path.mkdir

    def refuse_b(self, *args, **kwargs):
        if self.name == "b":
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse_b)
    with pytest.raises(PermissionError, match="cannot create .*b for"):
        with atomic_directory(tmp_path / "a" / "b" / "out"):
            pass
    assert list(tmp_path.iterdir()) == []  # a/ was made, then removed when b/ failed


def test_atomic_directory_syncs_every_file_before_the_rename(tmp_path, monkeypatch):
    import os

    synced: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def replace(src, dst) -> None:
        synced.append(f"rename -> {Path(dst).name}")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    with atomic_directory(tmp_path / "tree") as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "w.bin").write_bytes(b"w")
        (tmp / "config.json").write_text("{}")
    names = [Path(s).name if not s.startswith("rename") else s for s in synced]
    assert names[-1] == "rename -> tree"
    assert {"w.bin", "config.json", "sub"} <= set(names[:-1])  # files and folders synced, before the rename
    assert names.index("w.bin") < names.index("sub")
