r"""Occupancy grids (``.npy`` / ``.npy.gz`` arrays, ``.binvox`` files) -> surface point clouds in the PC15k layout.

ShapeNet PC15k cannot be had on every machine; this turns voxelised shapes (e.g. the
ModelNet10 chairs and ShapeNet binvox chairs in ``../shared/data/voxels``) into a tree
that :class:`~dit3d.data.PointCloudDataModule` reads like the real one::

    dit3d convert shapes ../shared/data/voxels/modelnet10_chair32/chair.npy.gz -o runs/modelnet10_chair_pc15k

Numbers measured on such trees are not ShapeNet benchmark numbers. Per shape:

1. **Occupancy**: a voxel is occupied if its value is > 0.5. All-empty grids are
   dropped (the ModelNet10 arrays hold an all-zero placeholder in row 0); ids keep the
   source row, so ``chair_0001`` is row 1. Sources: arrays ``(S, 1, X, Y, Z)`` or ``(S, X, Y, Z)`` (``.npy``,
   or gzip-compressed ``.npy.gz``, read row by row), or a folder of ``.binvox`` files read
   with trimesh (``axis_order="xzy"``, so their index axes are the mesh's x, y, z).
2. **Surface**: the grid, padded with one empty voxel, is meshed at level 0.5 by naive
   *surface nets* (one vertex per boundary cell, at the mean of the midpoints of its
   crossing edges; one quad per pair of face-adjacent voxels that differ, oriented
   outwards), a closed surface that rounds off the voxel staircase. ``method="marching-cubes"``
   uses scikit-image's marching cubes instead, if it is installed (:mod:`dit3d.data.surfaces`).
3. **Frame**: rotated so that ``y`` is up, as in ShapeNet (the ``up_axis`` of the source:
   ``"z"`` for ModelNet arrays, ``"y"`` for ShapeNet binvox files), then the mesh's
   axis-aligned bounding box is centred at the origin and scaled to a unit diagonal
   (the normalisation of ShapeNetCore v1 models).
4. **Points**: ``num_points`` (15,000) points uniformly on the surface (triangles drawn
   with probability proportional to area, uniform barycentric coordinates), float32,
   from ``numpy.random.default_rng([seed, crc32(shape id)])``: the same shape gets the
   same points whatever else is converted.
5. **Split**: shapes sorted by id, permuted by ``default_rng(seed)``; the first
   ``round(f_test * S)`` go to ``test``, the next ``round(f_val * S)`` to ``val``, the rest
   to ``train`` (a positive fraction gets at least one shape when ``S >= 3``).

The tree ``<root>/<synset>/{train,val,test}/<id>.npy`` is built in a temporary folder
and renamed into place, with ``<root>/<synset>/conversion.json`` recording all of the
above; an interrupted or failed conversion leaves nothing behind.
"""
from __future__ import annotations

import gzip
import json
import os
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dit3d.data.pc15k import CLOUD_POINTS, resolve_category
from dit3d.data.pointcloud_io import PointCloudFileError
from dit3d.data.surfaces import _TO_Y_UP, METHODS, NORMALIZATION, grid_to_pointcloud, sample_surface, surface_mesh
from dit3d.fileio import atomic_directory

__all__ = ["ShapeFileError", "convert_shapes", "grid_to_pointcloud", "iter_shapes", "read_binvox",
           "sample_surface", "surface_mesh"]

PathLike = str | os.PathLike


#: largest occupancy grid read (voxels per grid, 1024^3), and most points per converted shape
MAX_GRID_VOXELS = 1024 ** 3
MAX_POINTS = 10_000_000


class ShapeFileError(PointCloudFileError):
    """A shape source (occupancy-grid array, binvox file) is missing, unreadable or malformed."""


# --------------------------------------------------------------------------- sources


def _open_npy_rows(path: Path) -> tuple[Any, tuple[int, ...], np.dtype]:
    """Open a (gzip) .npy file positioned at its data; returns (file, shape, dtype)."""
    f = gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")
    try:
        version = np.lib.format.read_magic(f)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(f)
    except Exception as e:
        f.close()
        raise ShapeFileError(path, f"cannot read it as a (gzip-compressed) .npy array ({type(e).__name__}: {e})",
                             fix="check the file; it should hold occupancy grids (S, 1, X, Y, Z)") from None
    if fortran or dtype.hasobject or dtype.kind not in "fiub" or len(shape) not in (4, 5) or (
            len(shape) == 5 and shape[1] != 1):
        f.close()
        raise ShapeFileError(path, f"holds a {dtype} array of shape {shape} (Fortran order: {fortran})",
                             fix="expected numeric occupancy grids (S, 1, X, Y, Z) or (S, X, Y, Z) in C order")
    voxels = int(np.prod(shape[-3:], dtype=object))
    if voxels > MAX_GRID_VOXELS:
        f.close()
        raise ShapeFileError(path, f"grids of shape {tuple(shape[-3:])} ({voxels:,} voxels) exceed the "
                             f"{MAX_GRID_VOXELS:,} voxels this converter handles", fix="downsample the grids")
    if not path.name.endswith(".gz"):
        expected = int(np.prod(shape, dtype=object)) * dtype.itemsize
        actual = path.stat().st_size - f.tell()
        if actual < expected:
            f.close()
            raise ShapeFileError(path, f"truncated: the header says {shape[0]} grids of {tuple(shape[-3:])} "
                                 f"({expected:,} bytes) but the file holds {actual:,} bytes of data",
                                 fix="the file is incomplete; download or re-create it")
    return f, tuple(shape), dtype


def _grid_rows(path: Path, limit: int | None) -> Iterator[tuple[str, np.ndarray]]:
    f, shape, dtype = _open_npy_rows(path)
    grid_shape = shape[-3:]
    row_bytes = int(np.prod(grid_shape)) * dtype.itemsize
    stem = path.name.split(".")[0]
    kept = 0
    with f:
        for row in range(shape[0]):
            if limit is not None and kept >= limit:
                return
            try:
                buf = f.read(row_bytes)
            except (OSError, EOFError, zlib.error) as e:
                raise ShapeFileError(path, f"cannot read grid {row} ({type(e).__name__}: {e})",
                                     fix="the file is corrupt; download or re-create it") from None
            if len(buf) != row_bytes:
                raise ShapeFileError(path, f"truncated: the header says {shape[0]} grids, data ends in grid {row}",
                                     fix="the file is incomplete; download or re-create it")
            values = np.frombuffer(buf, dtype=dtype).reshape(grid_shape)
            if dtype.kind == "f" and not np.isfinite(values).all():
                raise ShapeFileError(path, f"grid {row} contains NaN or inf", fix="occupancy values must be 0 or 1")
            grid = values > 0.5
            if grid.any():
                kept += 1
                yield f"{stem}_{row:04d}", grid
        try:
            f.read(1)  # gzip checks its CRC and length trailer only at the end of the stream
        except (OSError, EOFError, zlib.error) as e:
            raise ShapeFileError(path, f"corrupt after the last grid ({type(e).__name__}: {e})",
                                 fix="the file is incomplete or damaged; download or re-create it") from None


def read_binvox(path: PathLike) -> np.ndarray:
    """Occupancy ``(X, Y, Z)`` bool of a ``.binvox`` file (trimesh's loader, index axes = mesh x, y, z).

    Raises:
        ShapeFileError: a missing, truncated or malformed file, or one that is not binvox v1.
    """
    from trimesh.exchange.binvox import load_binvox

    path = Path(path)
    if not path.is_file():
        raise ShapeFileError(path, "file does not exist" if not path.exists() else "not a file", fix="check the path")
    try:
        with open(path, "rb") as f:
            grid = np.asarray(load_binvox(f, axis_order="xzy").matrix, dtype=bool)
    except Exception as e:  # trimesh raises several types on malformed files
        raise ShapeFileError(path, f"cannot read it as binvox ({type(e).__name__}: {e})",
                             fix="check that it is a binvox v1 file") from None
    if grid.ndim != 3:
        raise ShapeFileError(path, f"binvox grid has shape {grid.shape}, expected 3 axes")
    return grid


def iter_shapes(source: PathLike, limit: int | None = None) -> tuple[list[str], Iterator[tuple[str, np.ndarray]], str]:
    """The shapes of a source: ``(ids, iterator of (id, grid), source format)``.

    ``source`` is an ``.npy`` / ``.npy.gz`` array of grids (ids ``<stem>_<row>``, empty grids
    skipped), a ``.binvox`` file, or a folder searched recursively for ``.binvox`` files
    (ids: paths below the folder without the suffix, ``/`` replaced by ``_``). The ids
    are known before any grid is decoded; ``limit`` keeps the first ``limit`` shapes.
    """
    src = Path(source)
    if not src.exists():
        raise FileNotFoundError(f"shape source {src} does not exist; give an .npy/.npy.gz array of occupancy grids, "
                                "a .binvox file, or a folder of .binvox files")
    if src.is_file() and (src.name.endswith(".npy") or src.name.endswith(".npy.gz")):
        ids = [i for i, _ in _grid_rows(src, limit)]  # one streaming pass to list the non-empty rows
        return ids, _grid_rows(src, limit), "occupancy-grid array"
    if src.is_dir():
        files = sorted(src.rglob("*.binvox"))
        base = src
    elif src.suffix == ".binvox":
        files, base = [src], src.parent
    else:
        raise ShapeFileError(src, "unknown source type", fix="give an .npy/.npy.gz array, a .binvox file or a folder")
    if not files:
        raise FileNotFoundError(f"{src} holds no .binvox files")
    files = files[:limit]
    ids = [str(p.relative_to(base).with_suffix("")).replace(os.sep, "_") for p in files]
    return ids, ((i, read_binvox(p)) for i, p in zip(ids, files)), "binvox"


# --------------------------------------------------------------------------- conversion


def _split_counts(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    f_train, f_val, f_test = (float(f) for f in fractions)
    if min(f_train, f_val, f_test) < 0 or not abs(f_train + f_val + f_test - 1) < 1e-6 or f_train <= 0:
        raise ValueError(f"split fractions (train, val, test) must be >= 0, sum to 1, with train > 0; "
                         f"got {tuple(fractions)}")
    n_val, n_test = round(f_val * n), round(f_test * n)
    if n >= 3:
        n_val, n_test = max(n_val, int(f_val > 0)), max(n_test, int(f_test > 0))
    if n - n_val - n_test < 1:
        raise ValueError(f"{n} shapes cannot be split {tuple(fractions)} with at least one training shape")
    return n - n_val - n_test, n_val, n_test


def convert_shapes(source: PathLike, root: PathLike, category: str = "chair", num_points: int = CLOUD_POINTS,
                   seed: int = 0, split: Sequence[float] = (0.8, 0.1, 0.1), limit: int | None = None,
                   up_axis: str | None = None, method: str = "surface-nets", overwrite: bool = False,
                   progress: bool = False) -> dict[str, Any]:
    """Convert voxelised shapes to surface point clouds in the PC15k layout (module docstring).

    Args:
        source: ``.npy`` / ``.npy.gz`` grids, a ``.binvox`` file or a folder of them.
        root: PC15k root; the shapes go to ``<root>/<synset>/{train,val,test}/<id>.npy``.
        category: name or synset id; names the folder.
        num_points: points per cloud (15,000 as PC15k: 10,000 for training draws, 5,000
            held out as references).
        seed: seeds the points and the split.
        split: fractions ``(train, val, test)``.
        limit: convert only the first ``limit`` shapes (in source order).
        up_axis: the source's up axis; None: ``"z"`` for arrays (ModelNet), ``"y"`` for binvox.
        method: ``"surface-nets"`` or ``"marching-cubes"`` (:func:`surface_mesh`).
        overwrite: replace an existing ``<root>/<synset>`` folder.
        progress: show a tqdm bar.

    Returns:
        the manifest written to ``conversion.json`` (counts, ids per split, settings).

    Raises:
        ShapeFileError: an unreadable, truncated or malformed source, NaN/inf grids, grids
            over :data:`MAX_GRID_VOXELS`, no non-empty shape.
        FileNotFoundError: ``source`` does not exist or holds no shapes.
        FileExistsError: ``<root>/<synset>`` exists and ``overwrite`` is False.
        ValueError: bad ``category``, ``limit``, ``num_points`` (1..:data:`MAX_POINTS`),
            ``method``, ``up_axis`` or ``split``.
        NotADirectoryError, PermissionError: ``root`` cannot be created or written.
        Nothing is left behind on any of these.
    """
    name, synset = resolve_category(category)
    dest = Path(root) / synset
    if dest.exists() and not overwrite:
        raise FileExistsError(f"{dest} already exists; pass overwrite=True (--overwrite) to replace it")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    if isinstance(num_points, bool) or not isinstance(num_points, int) or not 1 <= num_points <= MAX_POINTS:
        raise ValueError(f"num_points must be an int in [1, {MAX_POINTS:,}], got {num_points!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}")
    ids, shapes, kind = iter_shapes(source, limit)
    if not ids:
        raise ShapeFileError(source, "holds no non-empty shapes", fix="check the source")
    up = up_axis or ("z" if kind == "occupancy-grid array" else "y")
    if up not in _TO_Y_UP:
        raise ValueError(f"up_axis must be 'x', 'y' or 'z', got {up_axis!r}")
    counts = _split_counts(len(ids), split)
    ranked = np.asarray(sorted(ids), dtype=object)[np.random.default_rng(seed).permutation(len(ids))].tolist()
    assignment = {i: "test" for i in ranked[:counts[2]]}
    assignment.update({i: "val" for i in ranked[counts[2]:counts[2] + counts[1]]})
    start = time.perf_counter()
    with atomic_directory(dest, overwrite=overwrite) as tmp:
        for s in ("train", "val", "test"):
            (tmp / s).mkdir()
        if progress:
            from tqdm.auto import tqdm

            shapes = tqdm(shapes, total=len(ids), desc=f"{name} -> {dest}", unit="shape")
        for shape_id, grid in shapes:
            try:
                cloud = grid_to_pointcloud(grid, num_points, [seed, zlib.crc32(shape_id.encode())], up, method)
            except ValueError as e:
                raise ShapeFileError(source, f"shape {shape_id}: {e}") from None
            with open(tmp / assignment.get(shape_id, "train") / f"{shape_id}.npy", "wb") as f:
                np.save(f, cloud, allow_pickle=False)
        manifest = _manifest(source, kind, name, synset, ids, assignment, num_points, seed, split, up, method,
                             time.perf_counter() - start)
        (tmp / "conversion.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _manifest(source: PathLike, kind: str, name: str, synset: str, ids: list[str], assignment: dict[str, str],
              num_points: int, seed: int, split: Sequence[float], up: str, method: str, seconds: float) -> dict:
    import trimesh

    import dit3d

    per_split = {s: sorted(i for i in ids if assignment.get(i, "train") == s) for s in ("train", "val", "test")}
    return {
        "source": str(source), "source_format": kind, "category": name, "synset": synset,
        "num_shapes": len(ids), "counts": {s: len(v) for s, v in per_split.items()},
        "points_per_shape": num_points, "seed": seed, "split_fractions": list(map(float, split)),
        "split_rule": "ids sorted, permuted by numpy default_rng(seed); test first, then val, rest train",
        "occupancy": "value > 0.5; all-empty grids dropped", "surface": method, "source_up_axis": up,
        "normalization": NORMALIZATION, "point_sampling": "area-weighted triangles, uniform barycentric; "
        "numpy default_rng([seed, crc32(id)])", "seconds": round(seconds, 2),
        "versions": {"numpy": np.__version__, "trimesh": trimesh.__version__, "dit3d": dit3d.__version__},
        "ids": per_split,
    }
