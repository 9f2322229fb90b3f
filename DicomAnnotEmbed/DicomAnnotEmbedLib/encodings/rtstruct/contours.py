"""Masks to planar contours and back, vectorised over all slices of a segment.

Pixel conventions as in :mod:`core.rasterize`: an image has shape ``(rows, columns)``, points are
``(column, row)`` with pixel centres at integer coordinates; a pixel belongs to a region when its
centre is inside, several contours on one slice combined by the even-odd rule.

:func:`trace_slices` follows the pixel edges (corners at half-integer coordinates), so the
centre-inside, even-odd rule gives back exactly the mask (holes and islands included); straight
runs keep only their end points. Edges are chained into loops by pointer jumping over the
successor permutation, not by walking them one by one.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np

# Edge directions (dx, dy) in pixel space (y grows downwards): right, down, left, up.
_DIRECTIONS = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], dtype=np.int64)


def trace_slices(mask: np.ndarray) -> List[Tuple[int, np.ndarray]]:
    """Closed pixel-edge contours of a boolean stack ``(K, J, I)``.

    Returns ``[(k, points)]`` with ``points`` an ``(N, 2)`` float array of (column, row) corners
    (half-integers), each loop once, its first point not repeated. The region lies on the right of
    each loop walked in pixel space (y down), so outer loops and holes turn opposite ways.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim == 2:
        mask = mask[np.newaxis]
    present = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    if present.size == 0:
        return []
    rows = np.flatnonzero(mask[present].any(axis=(0, 2)))
    cols = np.flatnonzero(mask[present].any(axis=(0, 1)))
    r0, c0 = int(rows[0]), int(cols[0])
    box = mask[present][:, r0:int(rows[-1]) + 1, c0:int(cols[-1]) + 1]
    loops = _trace_box(box)
    return [(int(present[k]), points + np.array([c0, r0], dtype=float)) for k, points in loops]


def _trace_box(box: np.ndarray) -> List[Tuple[int, np.ndarray]]:
    n_k, n_j, n_i = box.shape
    padded = np.zeros((n_k, n_j + 2, n_i + 2), dtype=bool)
    padded[:, 1:-1, 1:-1] = box
    width = n_i + 1                         # corner lattice: (n_j + 1) x (n_i + 1) per slice
    plane = (n_j + 1) * width
    # Horizontal pixel edges at corner row y, between pixel rows y-1 and y, from corner x to x+1
    # (flat indices of bool arrays: np.nonzero of a 3D array is several times slower).
    below = padded[:, 1:, 1:-1]
    where = np.flatnonzero(below ^ padded[:, :-1, 1:-1])       # in (K, J+1, I)
    down = below.reshape(-1)[where] if below.flags.c_contiguous else below.ravel()[where]
    k, rest = np.divmod(where, (n_j + 1) * n_i)
    y, x = np.divmod(rest, n_i)
    base = k * plane + y * width + x
    h_start = np.where(down, base, base + 1)   # inside below: walk right; inside above: walk left
    h_dir = np.where(down, 0, 2)
    # Vertical pixel edges at corner column x, between pixel columns x-1 and x, from corner y to y+1.
    right_side = padded[:, 1:-1, 1:]
    where = np.flatnonzero(right_side ^ padded[:, 1:-1, :-1])  # in (K, J, I+1)
    right = right_side.ravel()[where]
    k2, rest = np.divmod(where, n_j * width)
    y2, x2 = np.divmod(rest, width)
    base2 = k2 * plane + y2 * width + x2
    v_start = np.where(right, base2 + width, base2)  # inside on +x: walk up; on -x: walk down
    v_dir = np.where(right, 3, 1)

    start = np.concatenate([h_start, v_start])
    direction = np.concatenate([h_dir, v_dir])
    step = _DIRECTIONS[direction]
    end = start + step[:, 0] + step[:, 1] * width
    n = start.size

    # Successor: the edge leaving this edge's end. At a saddle corner two edges leave: take the
    # right turn (towards the region), so that pixels touching at a corner stay one loop.
    order = np.argsort(start, kind="stable")
    sorted_start = start[order]
    first = np.searchsorted(sorted_start, end, side="left")
    count = np.searchsorted(sorted_start, end, side="right") - first
    successor = order[np.minimum(first, n - 1)]
    saddle = np.flatnonzero(count == 2)
    if saddle.size:
        a, b = order[first[saddle]], order[first[saddle] + 1]
        d_in = step[saddle]
        turn_a = d_in[:, 0] * step[a, 1] - d_in[:, 1] * step[a, 0]
        successor[saddle] = np.where(turn_a > 0, a, b)

    # Loops: the smallest edge index of each cycle (pointer jumping), then each edge's distance
    # to the end of its cycle cut just before that smallest edge.
    label = np.arange(n)
    jump = successor.copy()
    reach = 1
    while reach < n:
        np.minimum(label, label[jump], out=label)
        jump = jump[jump]
        reach *= 2
        if reach >= 8 and np.array_equal(label, label[successor]):
            break
    head = label == np.arange(n)
    nxt = successor.copy()
    terminal = head[successor]              # the edge whose successor starts the cycle
    nxt[terminal] = np.flatnonzero(terminal)
    distance = (~terminal).astype(np.int64)
    while True:
        further = distance[nxt]
        if not further.any():
            break
        distance += further
        nxt = nxt[nxt]
    walk = np.lexsort((-distance, label))   # by loop, from its head along the successors
    corner = start[walk]
    loop_of = label[walk]
    walk_dir = direction[walk]
    # Keep the corners where the direction changes.
    cuts = np.flatnonzero(np.diff(loop_of)) + 1
    loop_first = np.concatenate([[0], cuts])
    loop_last = np.concatenate([cuts - 1, [n - 1]])
    previous = np.arange(n) - 1
    previous[loop_first] = loop_last
    keep = walk_dir != walk_dir[previous]
    kept_loop = np.repeat(np.arange(loop_first.size), np.diff(np.concatenate([loop_first, [n]])))[keep]
    corner = corner[keep]
    slice_index = corner // plane
    within = corner % plane
    points = np.stack([within % width - 0.5, within // width - 0.5], axis=1).astype(float)
    bounds = np.flatnonzero(np.diff(kept_loop)) + 1
    return [(int(slice_index[s]), pts) for s, pts in
            zip(np.concatenate([[0], bounds]), np.split(points, bounds))]


def fill_slices(shape2d: Tuple[int, int], contours: List[Tuple[int, np.ndarray]]) -> Dict[int, np.ndarray]:
    """Rasterise closed contours ``[(k, (N, 2) column, row points)]`` into full planes: see
    :func:`fill_boxes`. Returns {k: (rows, columns) bool} for slices with contours."""
    top, left, boxes = fill_boxes(shape2d, contours)
    result = {}
    for k, box in boxes.items():
        plane = np.zeros(shape2d, dtype=bool)
        plane[top:top + box.shape[0], left:left + box.shape[1]] = box
        result[k] = plane
    return result


def fill_boxes(shape2d: Tuple[int, int], contours: List[Tuple[int, np.ndarray]]):
    """Rasterise closed contours ``[(k, (N, 2) column, row points)]``: a pixel is set when its
    centre is inside by the even-odd rule over all contours of its slice (a centre exactly on a
    vertical edge counts as inside on the edge's right side only: left edges included, right edges
    not, as in scanline fills).

    Returns ``(top, left, {k: box})``: one box per slice with contours, all of the same size, placed
    at row ``top``, column ``left`` of the image; it covers every vertex (clipped to the image), so
    that pixels on the contours can be added within it.
    """
    rows_n, cols_n = shape2d
    by_slice: Dict[int, List[np.ndarray]] = {}
    for k, points in contours:
        by_slice.setdefault(int(k), []).append(np.asarray(points, dtype=float).reshape(-1, 2))
    slices = sorted(by_slice)
    if not slices:
        return 0, 0, {}
    every = np.concatenate([ring for k in slices for ring in by_slice[k]])
    top = int(np.clip(np.floor(every[:, 1].min()), 0, rows_n - 1))
    bottom = int(np.clip(np.ceil(every[:, 1].max()), top, rows_n - 1))
    left = int(np.clip(np.floor(every[:, 0].min()), 0, cols_n - 1))
    right = int(np.clip(np.ceil(every[:, 0].max()), left, cols_n - 1))
    n_rows, n_cols = bottom - top + 1, right - left + 1
    result = {k: np.zeros((n_rows, n_cols), dtype=bool) for k in slices}
    rank = {k: n for n, k in enumerate(slices)}
    rings = [(rank[k], ring) for k in slices for ring in by_slice[k] if len(ring) >= 3]
    if not rings:
        return top, left, result
    sizes = np.array([len(r) for _, r in rings])
    start = np.concatenate([r for _, r in rings]) - np.array([left, top], dtype=float)
    end = np.concatenate([np.roll(r, -1, axis=0) for _, r in rings]) - np.array([left, top], dtype=float)
    owner = np.repeat(np.array([s for s, _ in rings]), sizes)
    x0, y0, x1, y1 = start[:, 0], start[:, 1], end[:, 0], end[:, 1]
    lo, hi = np.minimum(y0, y1), np.maximum(y0, y1)
    # Half-open in y so that a vertex shared by two edges counts once.
    first = np.maximum(np.ceil(lo).astype(np.int64), 0)
    last = np.minimum(np.ceil(hi).astype(np.int64) - 1, n_rows - 1)
    counts = np.where(y0 != y1, np.clip(last - first + 1, 0, None), 0)
    total = int(counts.sum())
    if total == 0:
        return top, left, result
    edge = np.repeat(np.arange(start.shape[0]), counts)
    row = first[edge] + (np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts))
    x_cross = x0[edge] + (row - y0[edge]) * (x1[edge] - x0[edge]) / (y1[edge] - y0[edge])
    # Pixel c is left of the crossing when c < x, i.e. c < ceil(x); toggles start there, and the
    # running sum along a row counts the crossings to the right of each pixel.
    stop = np.clip(np.ceil(x_cross), 0, n_cols).astype(np.int64)
    width = n_cols + 1
    slab = owner[edge]
    per_chunk = max(1, (1 << 22) // (n_rows * width))  # a few slices at a time: bounded memory
    order = np.argsort(slab, kind="stable")
    bounds = np.searchsorted(slab[order], np.arange(0, len(slices) + per_chunk, per_chunk))
    for chunk, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        if a == b:
            continue
        pick = order[a:b]
        first_slab = chunk * per_chunk
        n_slabs = min(per_chunk, len(slices) - first_slab)
        line = ((slab[pick] - first_slab) * n_rows + row[pick]) * width
        size = n_slabs * n_rows * width
        toggles = np.bincount(line, minlength=size) - np.bincount(line + stop[pick], minlength=size)
        inside = np.cumsum(toggles.reshape(n_slabs * n_rows, width), axis=1, dtype=np.int32)[:, :n_cols] & 1
        inside = inside.reshape(n_slabs, n_rows, n_cols).astype(bool)
        for n in range(n_slabs):
            result[slices[first_slab + n]] = inside[n]
    return top, left, result


def signed_areas(loops: List[np.ndarray]) -> np.ndarray:
    """Shoelace areas of loops in pixel space (y down): positive for loops with the region on their
    right as :func:`trace_slices` walks them (outer boundaries), negative for holes."""
    if not loops:
        return np.zeros(0)
    sizes = np.array([len(p) for p in loops])
    points = np.concatenate(loops)
    following = np.concatenate([np.roll(p, -1, axis=0) for p in loops])
    cross = points[:, 0] * following[:, 1] - following[:, 0] * points[:, 1]
    return np.add.reduceat(cross, np.concatenate([[0], np.cumsum(sizes)[:-1]])) / 2.0


def keyhole(loops: List[np.ndarray]) -> List[np.ndarray]:
    """The loops of one slice as polygons without holes: each hole joined to the loop just above it
    by a zero-width cut (down a pixel column from the boundary above the hole's top edge to that
    edge and back), so that readers that fill each polygon alone and unite them (plastimatch) get
    the holes too. Even-odd readers see the same region: the cut's two edges cancel. The pixel
    centres on a cut are region pixels (the cut runs through the region), and lie inside by
    any consistent tie rule. Python loops run over holes only."""
    areas = signed_areas(loops)
    holes = [n for n in np.argsort([loops[n][:, 1].min() for n in range(len(loops))], kind="stable")
             if areas[n] < 0]
    if not holes:
        return list(loops)
    # Horizontal edges of every loop: y, x range, loop.
    sizes = np.array([len(p) for p in loops])
    start = np.concatenate(loops)
    end = np.concatenate([np.roll(p, -1, axis=0) for p in loops])
    owner = np.repeat(np.arange(len(loops)), sizes)
    flat = start[:, 1] == end[:, 1]
    edge_y, edge_lo, edge_hi = start[flat, 1], np.minimum(start[flat, 0], end[flat, 0]), \
        np.maximum(start[flat, 0], end[flat, 0])
    edge_owner = owner[flat]
    polygon_of = list(range(len(loops)))      # loop -> polygon (index into polygons)
    polygons: List[Optional[np.ndarray]] = list(loops)
    for hole in holes:
        ring = loops[hole]
        top = ring[:, 1].min()
        # The hole's top-left corner; the cut comes down the pixel column just right of it.
        corner = int(np.flatnonzero((ring[:, 1] == top))[np.argmin(ring[ring[:, 1] == top, 0])])
        x = ring[corner, 0] + 0.5
        above = (edge_y < top) & (edge_lo < x) & (edge_hi > x)
        if not above.any():
            continue  # cannot happen for a traced hole; the even-odd form stays correct
        best = np.flatnonzero(above)[np.argmax(edge_y[above])]
        hit_y, target = edge_y[best], polygon_of[int(edge_owner[best])]
        polygon = polygons[target]
        following = np.roll(polygon, -1, axis=0)
        on = np.flatnonzero((polygon[:, 1] == hit_y) & (following[:, 1] == hit_y)
                            & (np.minimum(polygon[:, 0], following[:, 0]) < x)
                            & (np.maximum(polygon[:, 0], following[:, 0]) > x))
        if on.size != 1:
            continue
        at = int(on[0])
        hit, entry = np.array([[x, hit_y]]), np.array([[x, top]])
        around = np.roll(ring, -corner, axis=0)      # from the corner round the hole and back to it
        # A hole's top edge is walked leftwards into the corner: entry lies on the edge from the
        # last vertex of ``around`` to its first.
        spliced = np.concatenate([polygon[:at + 1], hit, entry, around, entry, hit, polygon[at + 1:]])
        polygons[target] = spliced
        polygons[hole] = None
        for n, p in enumerate(polygon_of):
            if p == hole:
                polygon_of[n] = target
    return [p for p in polygons if p is not None]
