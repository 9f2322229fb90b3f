"""The segment measurements are the values the code gave before the issue 14 speed work
(commit 69b4d0b), to the last bit: volume, image statistics, surface area and maximum 3D
diameter of shapes that take each path of the diameter search (few candidates; grid-line
reduction; convex hull), on an anisotropic axial grid and on an oblique one. ``EXPECTED`` was
printed by running this file as a script with that commit's package on PYTHONPATH."""
from __future__ import annotations

import numpy as np
import pytest

from DicomAnnotEmbedLib.core.geometry import VolumeGeometry
from DicomAnnotEmbedLib.core.measurements import measure_segmentation
from DicomAnnotEmbedLib.core.model import Segment, Segmentation


def _rotation(axis, degrees):
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    x, y, z = axis
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) * c + s * k + (1 - c) * np.outer(axis, axis)


GRIDS = {
    "axial": ((0.7, 0.8, 1.5), np.eye(3)),
    "oblique": ((0.9, 0.9, 2.5), _rotation((1, 2, 0.5), 25)),
}


def case(grid: str):
    """A label map of 7 segments (small random blob .. large sphere with a bar), the grid and a CT-like image."""
    spacing, directions = GRIDS[grid]
    shape = (48, 64, 64)
    geometry = VolumeGeometry.from_origin_spacing_directions(shape, (-40.0, 25.0, -10.0), spacing, directions)
    rng = np.random.default_rng(14)
    labels = np.zeros(shape, dtype=np.uint8)
    k, j, i = np.indices(shape)
    centres = [(8, 10, 10), (30, 50, 12), (24, 32, 40), (10, 48, 50), (36, 14, 48), (24, 30, 22), (40, 44, 36)]
    radii = [1.2, 2.5, 4.0, 6.0, 9.0, 14.0, 3.0]
    for label, ((ck, cj, ci), radius) in enumerate(zip(centres, radii), 1):
        lps = np.stack([i - ci, j - cj, k - ck], axis=-1) @ (geometry.ijk_to_lps[:3, :3].T)
        inside = np.linalg.norm(lps, axis=-1) <= radius * 1.6
        inside &= rng.random(shape) < (0.85 if label % 2 else 1.0)  # ragged surfaces for the odd ones
        labels[inside & (labels == 0)] = label
    labels[20:28, 30:33, 5:60][labels[20:28, 30:33, 5:60] == 0] = 6  # a bar through the large sphere's side
    image = rng.normal(40.0, 300.0, shape).round().astype(np.int16)
    segments = [Segment(f"s{n}", f"Segment {n}", (0.5, 0.5, 0.5), label_value=n) for n in range(1, 8)]
    return Segmentation(geometry, labels[None], segments), image


def measured(grid: str, planes: bool = False) -> dict:
    """The values by hex, on the whole image or (``planes``) on its planes as ``sr export`` gives
    them: shuffled, and every third one float32 (a file whose rescale is not whole)."""
    segmentation, image = case(grid)
    if planes:
        order = np.random.default_rng(3).permutation(image.shape[0])
        given = {"image_planes": ((int(k), image[k].astype(np.float32) if k % 3 == 0 else image[k]) for k in order)}
    else:
        given = {"image": image}
    return {sid: {name: float(q.value).hex() for name, q in m.quantities().items()}
            for sid, m in measure_segmentation(segmentation, modality="CT", **given).items()}


EXPECTED = {'axial': {'s1': {'maximum': '0x1.3980000000000p+9',
                  'maximum_diameter': '0x1.3e864c1a4f1dbp+2',
                  'mean': '-0x1.383e0f83e0f84p+2',
                  'minimum': '-0x1.3900000000000p+9',
                  'standard_deviation': '0x1.16d02aaa71df7p+8',
                  'surface_area': '0x1.00e656e0af086p+6',
                  'volume': '0x1.bb851eb851eb8p+4'},
           's2': {'maximum': '0x1.5d00000000000p+9',
                  'maximum_diameter': '0x1.2582fefd887e1p+3',
                  'mean': '0x1.9e2d21757ed53p+5',
                  'minimum': '-0x1.8e80000000000p+9',
                  'standard_deviation': '0x1.2c2b94839c2a2p+8',
                  'surface_area': '0x1.c804fcfa8597dp+7',
                  'volume': '0x1.145c28f5c28f6p+8'},
           's3': {'maximum': '0x1.2940000000000p+10',
                  'maximum_diameter': '0x1.c4ebe9f1c7177p+3',
                  'mean': '0x1.26ed334af769ap+5',
                  'minimum': '-0x1.ec80000000000p+9',
                  'standard_deviation': '0x1.2ca528a0b1c5cp+8',
                  'surface_area': '0x1.0c15ae7c1f42ep+10',
                  'volume': '0x1.cf428f5c28f5cp+9'},
           's4': {'maximum': '0x1.0f00000000000p+10',
                  'maximum_diameter': '0x1.492335cc3decdp+4',
                  'mean': '0x1.07fdb283d404dp+5',
                  'minimum': '-0x1.1c00000000000p+10',
                  'standard_deviation': '0x1.2e37db2497d02p+8',
                  'surface_area': '0x1.47fca086f0ffep+10',
                  'volume': '0x1.d2ef5c28f5c29p+11'},
           's5': {'maximum': '0x1.2780000000000p+10',
                  'maximum_diameter': '0x1.e34170b3907bcp+4',
                  'mean': '0x1.2a11617f3e4d9p+5',
                  'minimum': '-0x1.3a00000000000p+10',
                  'standard_deviation': '0x1.2ae809759a41dp+8',
                  'surface_area': '0x1.05cabaca17deap+13',
                  'volume': '0x1.36da3d70a3d70p+13'},
           's6': {'maximum': '0x1.6cc0000000000p+10',
                  'maximum_diameter': '0x1.7ca2321b820dcp+5',
                  'mean': '0x1.3e9eea3fc9e6cp+5',
                  'minimum': '-0x1.3000000000000p+10',
                  'standard_deviation': '0x1.2a91527985351p+8',
                  'surface_area': '0x1.0ee8e85f6074cp+13',
                  'volume': '0x1.45f23d70a3d70p+15'},
           's7': {'maximum': '0x1.0bc0000000000p+10',
                  'maximum_diameter': '0x1.5f7d940e7848cp+3',
                  'mean': '0x1.2e9c99444dbe8p+5',
                  'minimum': '-0x1.c180000000000p+9',
                  'standard_deviation': '0x1.3a4d41ffb80ecp+8',
                  'surface_area': '0x1.0daa412c19350p+9',
                  'volume': '0x1.833d70a3d70a4p+8'}},
 'oblique': {'s1': {'maximum': '0x1.8800000000000p+8',
                    'maximum_diameter': '0x1.2000000000003p+2',
                    'mean': '-0x1.7000000000000p+4',
                    'minimum': '-0x1.3900000000000p+9',
                    'standard_deviation': '0x1.142a72a2d110dp+8',
                    'surface_area': '0x1.23d4cdae62bd0p+5',
                    'volume': '0x1.2399999999999p+4'},
             's2': {'maximum': '0x1.5d00000000000p+9',
                    'maximum_diameter': '0x1.2d4b0ffc4539ep+3',
                    'mean': '0x1.abbbbbbbbbbbcp+4',
                    'minimum': '-0x1.7880000000000p+9',
                    'standard_deviation': '0x1.30b1cb54731dfp+8',
                    'surface_area': '0x1.b8b0068dd4ea9p+7',
                    'volume': '0x1.1160000000000p+8'},
             's3': {'maximum': '0x1.2940000000000p+10',
                    'maximum_diameter': '0x1.d4be1edfe682dp+3',
                    'mean': '0x1.5a70718901a33p+5',
                    'minimum': '-0x1.ec80000000000p+9',
                    'standard_deviation': '0x1.31732c8cbbdc8p+8',
                    'surface_area': '0x1.ea1ace9e2edfap+9',
                    'volume': '0x1.dadccccccccccp+9'},
             's4': {'maximum': '0x1.0f00000000000p+10',
                    'maximum_diameter': '0x1.4f4587039596dp+4',
                    'mean': '0x1.93bfd35b60f59p+4',
                    'minimum': '-0x1.1c00000000000p+10',
                    'standard_deviation': '0x1.2b521a74b4dd8p+8',
                    'surface_area': '0x1.4cee0c93c1f5dp+10',
                    'volume': '0x1.d07c000000000p+11'},
             's5': {'maximum': '0x1.26c0000000000p+10',
                    'maximum_diameter': '0x1.ee2968c4cc0e7p+4',
                    'mean': '0x1.3bf7c39a6c709p+5',
                    'minimum': '-0x1.10c0000000000p+10',
                    'standard_deviation': '0x1.2bc186e626f7ap+8',
                    'surface_area': '0x1.e70089409bed2p+12',
                    'volume': '0x1.4a74666666666p+13'},
             's6': {'maximum': '0x1.6cc0000000000p+10',
                    'maximum_diameter': '0x1.cec3ba58aa174p+5',
                    'mean': '0x1.5278ef82c44a1p+5',
                    'minimum': '-0x1.22c0000000000p+10',
                    'standard_deviation': '0x1.2bf055811ce43p+8',
                    'surface_area': '0x1.0becc2d43675cp+13',
                    'volume': '0x1.6bc1a66666666p+15'},
             's7': {'maximum': '0x1.8080000000000p+9',
                    'maximum_diameter': '0x1.60129dc323d4dp+3',
                    'mean': '0x1.acad76e837f4dp+4',
                    'minimum': '-0x1.9300000000000p+9',
                    'standard_deviation': '0x1.32945982fe83ep+8',
                    'surface_area': '0x1.c1bbb8ec961cbp+8',
                    'volume': '0x1.7293333333333p+8'}}}


@pytest.mark.parametrize("grid", sorted(GRIDS))
def test_measurements_are_the_values_of_before(grid):
    assert measured(grid) == EXPECTED[grid]


@pytest.mark.parametrize("grid", sorted(GRIDS))
def test_measurements_on_the_images_planes_are_the_values_of_before(grid):
    """``sr export`` gathers the values under each segment plane by plane (issue 14, memory)."""
    assert measured(grid, planes=True) == EXPECTED[grid]


def test_planes_that_do_not_make_the_grid_are_errors():
    from DicomAnnotEmbedLib.core.errors import GeometryError

    segmentation, image = case("axial")
    planes = [(k, image[k]) for k in range(image.shape[0])]
    for wrong, message in [(planes[:-1], "has no plane 47"), (planes + planes[:1], "given twice"),
                           (planes[:-1] + [(47, image[47, :10])], r"plane 47 \(10, 64\)"),
                           (planes[:-1] + [(48, image[47])], "plane 48")]:
        with pytest.raises(GeometryError, match=message):
            measure_segmentation(segmentation, image_planes=wrong)
    with pytest.raises(ValueError, match="not both"):
        measure_segmentation(segmentation, image, image_planes=planes)


if __name__ == "__main__":
    import pprint

    pprint.pprint({grid: measured(grid) for grid in sorted(GRIDS)}, width=120)
