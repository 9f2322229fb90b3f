"""The CT phantom the benchmarks write (shared by bench_overlay and bench_seg)."""
from __future__ import annotations

import numpy as np


def body_plane(rows: int, columns: int, origin_xy, spacing_xy) -> np.ndarray:
    """One int16 HU slice: air, an elliptic body (40 HU) with two lungs (-850) and a spine (700).

    ``origin_xy`` and ``spacing_xy`` are the x (column) and y (row) origin and spacing in mm."""
    y = origin_xy[1] + np.arange(rows)[:, None] * spacing_xy[1]
    x = origin_xy[0] + np.arange(columns)[None, :] * spacing_xy[0]
    half_x, half_y = 0.45 * columns * spacing_xy[0], 0.35 * rows * spacing_xy[1]
    plane = np.full((rows, columns), -1000, dtype=np.int16)
    plane[(x / half_x) ** 2 + (y / half_y) ** 2 <= 1.0] = 40
    for side in (-1, 1):
        lung = ((x - side * 0.45 * half_x) / (0.3 * half_x)) ** 2 + ((y + 0.1 * half_y) / (0.6 * half_y)) ** 2 <= 1
        plane[lung] = -850
    plane[(x / 15.0) ** 2 + ((y - 0.7 * half_y) / 15.0) ** 2 <= 1.0] = 700
    return plane
