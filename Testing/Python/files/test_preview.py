"""preview: grayscale slices with coloured masks written as PNG."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from DicomAnnotEmbedLib.core.errors import InputError
from DicomAnnotEmbedLib.files.preview import (CT_WINDOW, default_window, render_preview,
                                        render_slice_png, window_to_uint8)

RED = (1.0, 0.0, 0.0)
GREEN = (0.0, 1.0, 0.0)


def read_rgb(path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "RGB"
        return np.asarray(image).astype(int)


@pytest.fixture
def image() -> np.ndarray:
    """30 rows x 40 columns, a gradient so that gray levels vary."""
    return np.linspace(-100, 300, 30 * 40).reshape(30, 40)


@pytest.fixture
def square() -> np.ndarray:
    mask = np.zeros((30, 40), dtype=bool)
    mask[5:15, 10:30] = True
    return mask


def test_window_to_uint8():
    values = np.array([[-1000, -160, 40, 240, 3000]], dtype=float)
    out = window_to_uint8(values, 40, 400)
    assert out.dtype == np.uint8
    assert out.tolist() == [[0, 0, 128, 255, 255]]  # 127.5 rounds to even


def test_default_window():
    rng = np.random.default_rng(0)
    ct = rng.integers(-1024, 1500, size=(4, 20, 20))
    ct[:, :2] = -3024  # padding outside the reconstruction circle
    assert default_window(ct) == CT_WINDOW
    mr = rng.uniform(0, 1000, size=(4, 20, 20))
    center, width = default_window(mr)
    p1, p99 = np.percentile(mr, [1, 99])
    assert center == pytest.approx((p1 + p99) / 2) and width == pytest.approx(p99 - p1)
    assert default_window(np.full((2, 3, 3), 5.0))[1] > 0


def test_mask_is_tinted_and_outside_is_gray(tmp_path, image, square):
    path = render_slice_png(tmp_path / "slice.png", image, [(square, RED, "tumour")],
                            legend=False)
    rgb = read_rgb(path)
    assert rgb.shape == (30, 40, 3)

    interior = np.zeros_like(square)
    interior[6:14, 11:29] = True
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    assert np.all(r[interior] > g[interior]) and np.all(g[interior] == b[interior])
    outline = square & ~interior
    assert np.all(rgb[outline] == [255, 0, 0])
    assert np.all(r[~square] == g[~square]) and np.all(g[~square] == b[~square])
    # Gray levels follow the image (gradient), not a constant.
    assert len(np.unique(r[~square])) > 10


def test_scale_and_legend(tmp_path, image, square):
    other = np.roll(square, 12, axis=0)
    plain = read_rgb(render_slice_png(tmp_path / "plain.png", image,
                                      [(square, RED, "a"), (other, GREEN, "b")],
                                      scale=3, legend=False))
    assert plain.shape == (90, 120, 3)
    with_legend = read_rgb(render_slice_png(tmp_path / "legend.png", image,
                                            [(square, RED, "a"), (other, GREEN, "b")], scale=3))
    assert with_legend.shape[0] > 90 and with_legend.shape[1] >= 120
    # The image keeps the top-left corner; the legend is below it.
    np.testing.assert_array_equal(with_legend[:90, :120], plain)
    legend = with_legend[90:]
    assert np.any(np.all(legend == [255, 0, 0], axis=-1))
    assert np.any(np.all(legend == [0, 255, 0], axis=-1))
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]


def test_render_preview_writes_chosen_slices(tmp_path):
    volume = np.random.default_rng(2).normal(size=(5, 30, 40))
    mask = np.zeros(volume.shape, dtype=bool)
    mask[2, 10:20, 10:20] = True
    paths = render_preview(tmp_path / "previews", volume, [0, 2], [(mask, GREEN, "lesion")],
                           legend=False)
    assert [os.path.basename(p) for p in paths] == ["slice_0000.png", "slice_0002.png"]
    slice0, slice2 = read_rgb(paths[0]), read_rgb(paths[1])
    assert slice0.shape == slice2.shape == (30, 40, 3)
    assert np.all(slice0[..., 0] == slice0[..., 1])  # nothing drawn on slice 0
    assert np.all(slice2[10:20, 10:20, 1] > slice2[10:20, 10:20, 0])

    patterned = render_preview(str(tmp_path / "other" / "ct_{k:03d}.png"), volume, [4], [])
    assert patterned == [str(tmp_path / "other" / "ct_004.png")]


def test_bad_arguments(tmp_path, image, square):
    with pytest.raises(InputError, match="shape"):
        render_slice_png(tmp_path / "x.png", image, [(square[:10], RED, "small")])
    with pytest.raises(InputError, match="outside"):
        render_preview(tmp_path, np.zeros((2, 3, 3)), [2], [])
    assert not list(tmp_path.iterdir())
