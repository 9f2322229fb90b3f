"""PNG previews: grayscale slices with coloured, outlined masks, for a quick visual check.

Images are 2D arrays indexed ``[j, i]`` (row, column) and volumes ``[k, j, i]``, as in
:mod:`.geometry`; a PNG pixel ``(x, y)`` shows voxel ``(i, j) = (x // scale, y // scale)``,
rows downwards as DICOM viewers show them. Colours are (r, g, b) floats in 0..1.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..core.errors import InputError, OutputError
from ..core.outputs import write_atomic

Color = Tuple[float, float, float]
#: (mask, colour, label) for one slice.
Layer = Tuple[np.ndarray, Color, str]

#: Window used for CT volumes: soft tissue (centre 40 HU, width 400 HU).
CT_WINDOW = (40.0, 400.0)

_LEGEND_PADDING = 3
_LEGEND_SWATCH = 10


def window_to_uint8(image2d: np.ndarray, center: float, width: float) -> np.ndarray:
    """Map values linearly so that ``center -/+ width/2`` become 0 and 255 (clipped)."""
    width = max(float(width), 1e-12)
    low = float(center) - width / 2.0
    scaled = (np.asarray(image2d, dtype=np.float64) - low) * 255.0 / width
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def default_window(volume: np.ndarray) -> Tuple[float, float]:
    """A display window (centre, width) for ``volume``.

    Data that looks like CT in Hounsfield units (air near -1000, values up to bone, no
    value below the -3024 that scanners use for padding) gets the soft tissue window
    :data:`CT_WINDOW`; anything else spans its 1st to 99th percentile.
    """
    values = np.asarray(volume).reshape(-1)
    if values.size == 0:
        return (0.0, 1.0)
    stride = max(1, values.size // 1_000_000)  # a sample is enough for percentiles
    sample = values[::stride].astype(np.float64)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return (0.0, 1.0)
    low, p1, p99, high = np.percentile(sample, [0, 1, 99, 100])
    if -3100 <= low <= -900 and p1 <= -500 and 0 < p99 and high <= 32767:
        return CT_WINDOW
    width = float(p99 - p1)
    if width <= 0:  # (nearly) constant image: any window shows it
        width = float(high - low) or 1.0
    return (float(p1 + p99) / 2.0, width)


def render_slice_png(path: os.PathLike | str, image2d: np.ndarray, layers: Sequence[Layer] = (),
                     window: Optional[Tuple[float, float]] = None, alpha: float = 0.45,
                     outline: bool = True, scale: int = 1, legend: bool = True) -> str:
    """Write ``image2d`` (rows, columns) as a grayscale PNG with coloured masks.

    Args:
        path: PNG file to write (atomically: a temporary file, then rename).
        image2d: the slice, indexed ``[j, i]``.
        layers: ``(mask2d bool, (r, g, b) in 0..1, label)``, drawn in order (later on top).
            Each mask is blended into the image with ``alpha``, and its boundary (pixels
            with a 4-neighbour outside the mask) painted fully opaque when ``outline``.
        window: (centre, width) for the gray levels; :func:`default_window` of the slice
            when None.
        scale: integer magnification (nearest neighbour), so small slices stay legible.
        legend: add a strip below the image naming each labelled layer in its colour.
            The image keeps the top-left ``columns*scale`` x ``rows*scale`` pixels.

    Returns:
        ``path`` as a string.
    """
    image2d = np.asarray(image2d)
    if image2d.ndim != 2 or image2d.size == 0:
        raise InputError(f"a preview needs a 2D image, got shape {image2d.shape}")
    scale = int(scale)
    if scale < 1:
        raise InputError(f"scale must be a positive integer, got {scale}")
    if window is None:
        window = default_window(image2d)
    gray = _magnify(window_to_uint8(image2d, *window), scale)
    rgb = np.repeat(gray[:, :, None].astype(np.float32), 3, axis=2)
    thickness = max(1, scale // 2)
    for mask, color, label in layers:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != image2d.shape:
            raise InputError(f"mask {label!r} has shape {mask.shape}, the image {image2d.shape}")
        mask = _magnify(mask, scale)
        color_255 = _color_255(color)
        rgb[mask] = (1.0 - alpha) * rgb[mask] + alpha * color_255
        if outline:
            rgb[_boundary(mask, thickness)] = color_255
    pixels = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)

    from PIL import Image

    picture = Image.fromarray(pixels)  # (rows, columns, 3) uint8 is RGB
    labelled = [(color, str(label)) for _, color, label in layers if str(label)]
    if legend and labelled:
        picture = _add_legend(picture, labelled)
    path = Path(path)
    write_atomic(path, lambda f: picture.save(f, format="PNG"))
    return str(path)


def render_preview(path_pattern_or_dir: os.PathLike | str, volume: np.ndarray,
                   slices: Sequence[int], overlays: Sequence[Tuple[np.ndarray, Color, str]] = (),
                   window: Optional[Tuple[float, float]] = None, **options) -> List[str]:
    """Write one PNG per chosen slice of ``volume`` (K, J, I) with its masks (K, J, I).

    Args:
        path_pattern_or_dir: a folder (created if needed), where files are named
            ``slice_{k:04d}.png``; or a pattern with ``{k}`` such as ``"out/ct_{k:03d}.png"``.
        slices: slice indices k to render.
        overlays: ``(mask3d bool, (r, g, b) in 0..1, label)``, each the shape of ``volume``.
        window: (centre, width); :func:`default_window` of the whole volume when None, so
            that every slice is shown alike.
        options: passed to :func:`render_slice_png` (alpha, outline, scale, legend).

    Returns:
        Paths written, in the order of ``slices``.
    """
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise InputError(f"a preview volume must be 3D (K, J, I), got shape {volume.shape}")
    for mask, _, label in overlays:
        if np.shape(mask) != volume.shape:
            raise InputError(f"mask {label!r} has shape {np.shape(mask)}, the volume "
                             f"{volume.shape}")
    n_slices = volume.shape[0]
    for k in slices:
        if not 0 <= int(k) < n_slices:
            raise InputError(f"slice {k} is outside the volume (0 to {n_slices - 1})")
    if window is None:
        window = default_window(volume)

    target = str(path_pattern_or_dir)
    if "{" in target:
        pattern = target
    else:
        pattern = str(Path(target) / "slice_{k:04d}.png")
    written = []
    for k in slices:
        k = int(k)
        path = Path(pattern.format(k=k))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(f"cannot create the preview folder: {error.strerror or error}",
                              path.parent) from None
        layers = [(mask[k], color, label) for mask, color, label in overlays]
        written.append(render_slice_png(path, volume[k], layers, window=window, **options))
    return written


# --- helpers ----------------------------------------------------------------------

def _magnify(array: np.ndarray, scale: int) -> np.ndarray:
    if scale == 1:
        return array
    return np.repeat(np.repeat(array, scale, axis=0), scale, axis=1)


def _color_255(color: Color) -> np.ndarray:
    rgb = np.asarray(color, dtype=np.float32).reshape(-1)
    if rgb.size != 3 or not np.all(np.isfinite(rgb)):
        raise InputError(f"a colour must be 3 numbers (r, g, b) in 0..1, got {color!r}")
    return np.clip(rgb, 0.0, 1.0) * 255.0


def _boundary(mask: np.ndarray, thickness: int) -> np.ndarray:
    """Mask pixels within ``thickness`` 4-neighbour steps of the outside (image edge is
    outside, so masks touching the border are closed)."""
    inner = mask
    for _ in range(thickness):
        padded = np.pad(inner, 1, constant_values=False)
        inner = (padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1]
                 & padded[1:-1, :-2] & padded[1:-1, 2:])
    return mask & ~inner


def _add_legend(picture, labelled: Sequence[Tuple[Color, str]]):
    """``picture`` with a black strip below it listing each label beside a colour swatch."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    labelled = [(color, _printable(label, font)) for color, label in labelled]
    measure = ImageDraw.Draw(picture)
    boxes = [measure.textbbox((0, 0), label, font=font) for _, label in labelled]
    line_height = max(_LEGEND_SWATCH, max(b[3] - b[1] for b in boxes)) + _LEGEND_PADDING
    text_width = max(b[2] - b[0] for b in boxes)
    width = max(picture.width, 3 * _LEGEND_PADDING + _LEGEND_SWATCH + text_width)
    height = picture.height + _LEGEND_PADDING + line_height * len(labelled)
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    y = picture.height + _LEGEND_PADDING
    for (color, label), box in zip(labelled, boxes):
        fill = tuple(int(round(c)) for c in _color_255(color))
        x = _LEGEND_PADDING
        draw.rectangle([x, y, x + _LEGEND_SWATCH - 1, y + _LEGEND_SWATCH - 1], fill=fill)
        draw.text((x + _LEGEND_SWATCH + _LEGEND_PADDING, y - box[1]), label, font=font,
                  fill=(255, 255, 255))
        y += line_height
    return canvas


def _printable(label: str, font) -> str:
    """``label``, with characters the bitmap fallback font cannot encode replaced (Pillow
    without FreeType only has a Latin-1 font)."""
    try:
        font.getbbox(label)
        return label
    except UnicodeEncodeError:
        return label.encode("latin-1", "replace").decode("latin-1")
