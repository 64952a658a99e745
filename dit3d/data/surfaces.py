r"""Surfaces of occupancy grids and uniform point samples on them (numpy; scikit-image optional).

Used by :mod:`dit3d.data.shapes` to turn voxelised shapes into PC15k-style clouds:

* :func:`surface_mesh`: the grid, padded with one empty voxel, meshed at level 0.5 by
  naive *surface nets* (one vertex per boundary cell, at the mean of the midpoints of its
  crossing edges; one quad per pair of face-adjacent voxels that differ), a closed mesh
  whose flat sides lie on the voxel faces and whose staircases are rounded off; or by
  scikit-image's marching cubes if installed. Triangles are oriented outwards.
* :func:`sample_surface`: points uniformly on a triangle mesh (triangles drawn with
  probability proportional to area, uniform barycentric coordinates).
* :func:`grid_to_pointcloud`: both, with the frame of ShapeNet: rotated so that ``y``
  is up, the axis-aligned bounding box centred at the origin with unit diagonal.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["METHODS", "NORMALIZATION", "grid_to_pointcloud", "sample_surface", "surface_mesh"]

METHODS = ("surface-nets", "marching-cubes")
# Rotations taking the source's up axis to +y (right-handed, det 1).
_TO_Y_UP = {"y": np.eye(3), "z": np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]),
            "x": np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])}
NORMALIZATION = "axis-aligned bounding box centred at the origin, diagonal scaled to 1 (after rotating to y up)"


def _surface_nets(occ: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Naive surface nets of a padded bool grid at level 0.5 -> vertices (V, 3), triangles (F, 3)."""
    o = occ.astype(np.int8)
    cells = tuple(s - 1 for s in o.shape)
    corners = [(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)]
    vals = {k: o[k[0]:k[0] + cells[0], k[1]:k[1] + cells[1], k[2]:k[2] + cells[2]] for k in corners}
    total = np.zeros(cells + (3,))
    count = np.zeros(cells)
    for u in corners:  # the 12 cell edges: corner pairs differing in one coordinate
        for axis in range(3):
            if u[axis]:
                continue
            v = tuple(1 if d == axis else u[d] for d in range(3))
            cross = vals[u] != vals[v]
            total[cross] += 0.5 * (np.asarray(u, float) + np.asarray(v, float))
            count[cross] += 1
    active = count > 0
    vid = np.full(cells, -1, dtype=np.int64)
    vid[active] = np.arange(int(active.sum()))
    vertices = np.argwhere(active) + total[active] / count[active][:, None]
    quads = []
    for a in range(3):
        b, c = (a + 1) % 3, (a + 2) % 3
        lo = [slice(0, -1)] * 3
        hi = [slice(0, -1)] * 3
        hi[a] = slice(1, None)
        lo[b] = lo[c] = hi[b] = hi[c] = slice(1, -1)  # voxels off the padding border in b and c
        diff = o[tuple(lo)] != o[tuple(hi)]
        outward = o[tuple(lo)][diff] == 1  # occupied at p, empty at p + e_a: normal +a
        p = np.argwhere(diff)
        p[:, b] += 1
        p[:, c] += 1  # back to padded-grid voxel coordinates
        ring = []
        for db, dc in ((-1, -1), (0, -1), (0, 0), (-1, 0)):  # counter-clockwise in (b, c): normal +a
            q = p.copy()
            q[:, b] += db
            q[:, c] += dc
            ring.append(vid[q[:, 0], q[:, 1], q[:, 2]])
        ring = np.stack(ring, 1)
        ring[~outward] = ring[~outward][:, ::-1]
        quads.append(ring)
    quads = np.concatenate(quads)
    faces = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    return vertices, faces


def surface_mesh(grid: np.ndarray, method: str = "surface-nets") -> tuple[np.ndarray, np.ndarray]:
    """Closed triangle mesh of the boundary of occupied voxels, in voxel index coordinates.

    Args:
        grid: occupancy ``(X, Y, Z)`` (bool, or values > 0.5 occupied).
        method: ``"surface-nets"`` (numpy, always available) or ``"marching-cubes"``
            (scikit-image).

    Shapes:
        returns vertices ``(V, 3)`` float64 (voxel centres at integer coordinates) and
        triangles ``(F, 3)`` int64, oriented outwards

    Example:
        >>> v, f = surface_mesh(np.ones((1, 1, 1), bool))  # one voxel: a cube of side 1/3
        >>> v.shape, f.shape, round(float(v.max()), 6)
        ((8, 3), (12, 3), 0.166667)
    """
    occ = np.asarray(grid) > 0.5
    if occ.ndim != 3 or not occ.any():
        raise ValueError(f"grid must be a non-empty 3-D occupancy array, got shape {occ.shape} with "
                         f"{int(occ.sum())} occupied voxels")
    padded = np.pad(occ, 1)
    if method == "surface-nets":
        vertices, faces = _surface_nets(padded)
    elif method == "marching-cubes":
        try:
            from skimage.measure import marching_cubes
        except ImportError:
            raise ValueError("method='marching-cubes' needs scikit-image (pip install scikit-image); "
                             "the default 'surface-nets' needs nothing") from None
        vertices, faces, _, _ = marching_cubes(padded.astype(np.float32), 0.5)
    else:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}")
    vertices, faces = np.asarray(vertices, np.float64) - 1.0, np.asarray(faces, np.int64)
    tri = vertices[faces]
    if np.einsum("ij,ij->", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])) < 0:  # 6 x signed volume
        faces = faces[:, ::-1]  # make the normals point outwards, whatever the mesher's convention
    return vertices, np.ascontiguousarray(faces)


def sample_surface(vertices: np.ndarray, faces: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` points uniformly on a triangle mesh: area-weighted triangles, uniform barycentrics.

    Shapes:
        vertices ``(V, 3)``, faces ``(F, 3)`` -> ``(count, 3)`` float64
    """
    tri = vertices[faces]  # (F, 3, 3)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    if not area.sum() > 0:
        raise ValueError("the mesh has no area to sample points on")
    pick = rng.choice(len(faces), size=count, p=area / area.sum())
    r1, r2 = np.sqrt(rng.random(count))[:, None], rng.random(count)[:, None]
    t = tri[pick]
    return (1 - r1) * t[:, 0] + r1 * (1 - r2) * t[:, 1] + r1 * r2 * t[:, 2]


def grid_to_pointcloud(grid: np.ndarray, num_points: int = 15_000, seed: int | Sequence[int] = 0,
                       up_axis: str = "y", method: str = "surface-nets") -> np.ndarray:
    """Surface points of one occupancy grid, y up, bounding box centred with unit diagonal.

    Args:
        grid: occupancy ``(X, Y, Z)``.
        num_points: points to sample.
        seed: seed (or seed sequence) of ``numpy.random.default_rng``.
        up_axis: the grid axis pointing up (``"x"``, ``"y"`` or ``"z"``); it becomes ``y``.
        method: meshing method (:func:`surface_mesh`).

    Shapes:
        returns ``(num_points, 3)`` float32
    """
    if up_axis not in _TO_Y_UP:
        raise ValueError(f"up_axis must be 'x', 'y' or 'z', got {up_axis!r}")
    vertices, faces = surface_mesh(grid, method)
    vertices = vertices @ _TO_Y_UP[up_axis].T
    lo, hi = vertices.min(0), vertices.max(0)
    vertices = (vertices - 0.5 * (lo + hi)) / np.linalg.norm(hi - lo)
    return sample_surface(vertices, faces, num_points, np.random.default_rng(seed)).astype(np.float32)

