"""PNG previews: grayscale slices with coloured, outlined masks, for a quick visual check.

Images are 2D arrays indexed ``[j, i]`` (row, column) and volumes ``[k, j, i]``, as in
:mod:`.geometry`; a PNG pixel ``(x, y)`` shows voxel ``(i, j) = (x // scale, y // scale)``,
rows downwards as DICOM viewers show them. Colours are (r, g, b) floats in 0..1.

:func:`render_preview` given the volume's ``geometry`` shows every slice in the radiological
convention whatever the storage order (a volume dicomized with flipped or swapped axes is not
shown mirrored or upside down): axial images with the patient's right on the left of the picture
and anterior at the top; coronal with right on the left and superior at the top; sagittal with
anterior on the left and superior at the top (:func:`dicom.dicomize.to_standard_orientation`).
Without ``geometry`` the storage order is shown. The strip below the image names the slice (index
and position along the slice normal, in mm) and lists only the segments and markups present on
that slice; colours too close to tell apart are replaced (a segment's own colour is kept when no
earlier one is close to it). The legend font is DejaVu Sans when installed (Debian's
``fonts-dejavu-core``: any script it covers), else Pillow's own.
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
                     outline: bool = True, scale: int = 1, legend: bool = True, caption: str = "") -> str:
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
        legend: add a strip below the image naming each labelled layer that has pixels on this
            slice, in its colour (and ``caption`` first, e.g. the slice index and position).
            The image keeps the top-left ``columns*scale`` x ``rows*scale`` pixels.
        caption: a first line of the strip (with ``legend``).

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
    labelled = []
    for mask, color, label in layers:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != image2d.shape:
            raise InputError(f"mask {label!r} has shape {mask.shape}, the image {image2d.shape}")
        if str(label) and mask.any():  # the legend names what this slice shows
            labelled.append((color, str(label)))
        mask = _magnify(mask, scale)
        color_255 = _color_255(color)
        rgb[mask] = (1.0 - alpha) * rgb[mask] + alpha * color_255
        if outline:
            rgb[_boundary(mask, thickness)] = color_255
    pixels = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)

    from PIL import Image

    picture = Image.fromarray(pixels)  # (rows, columns, 3) uint8 is RGB
    if legend and (labelled or caption):
        picture = _add_legend(picture, labelled, caption)
    path = Path(path)
    write_atomic(path, lambda f: picture.save(f, format="PNG"))
    return str(path)


def render_preview(path_pattern_or_dir: os.PathLike | str, volume: np.ndarray,
                   slices: Sequence[int], overlays: Sequence[Tuple[np.ndarray, Color, str]] = (),
                   window: Optional[Tuple[float, float]] = None, geometry=None, **options) -> List[str]:
    """Write one PNG per chosen slice of ``volume`` (K, J, I) with its masks (K, J, I).

    With ``geometry`` (the volume's :class:`VolumeGeometry`, LPS) the slices are shown in the
    radiological convention whatever the storage order (see the module docstring) and captioned
    with their position; without it as stored, captioned with their index.

    Args:
        path_pattern_or_dir: a folder (created if needed), where files are named
            ``slice_{k:04d}.png``; or a pattern with ``{k}`` such as ``"out/ct_{k:03d}.png"``.
        slices: slice indices k to render.
        overlays: ``(mask3d bool, (r, g, b) in 0..1, label)``, each the shape of ``volume``.
        window: (centre, width); :func:`default_window` of the whole volume when None, so
            that every slice is shown alike.
        geometry: the volume's grid, for the display orientation and the slice positions.
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
    colors = distinct_colors([color for _, color, _ in overlays])
    positions = None
    if geometry is not None:
        from ..dicom.dicomize import to_standard_orientation

        normal = np.asarray(geometry.slice_normal, dtype=float)
        axis = int(np.argmax(np.abs(normal)))
        normal = normal if normal[axis] > 0 else -normal  # towards L, P or S whatever the storage order
        centres = geometry.ijk_to_lps_points([[0.0, 0.0, float(k)] for k in range(n_slices)])
        positions = [f"{'LPS'[axis]} {float(np.dot(c, normal)):+.1f} mm" for c in centres]
        volume, _ = to_standard_orientation(volume, geometry)
        overlays = [(to_standard_orientation(np.asarray(mask), geometry)[0], color, label)
                    for mask, color, label in overlays]
    overlays = [(mask, color, label) for (mask, _, label), color in zip(overlays, colors)]

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
        caption = f"slice {k} of 0..{n_slices - 1}" + (f", {positions[k]}" if positions else "")
        written.append(render_slice_png(path, volume[k], layers, window=window, caption=caption, **options))
    return written


#: Colours that replace ones too close to an earlier layer's (well apart from each other).
_SPARE_COLORS = [(0.90, 0.10, 0.10), (0.10, 0.75, 0.20), (0.15, 0.35, 1.00), (1.00, 0.85, 0.00),
                 (0.85, 0.20, 0.90), (0.00, 0.85, 0.90), (1.00, 0.55, 0.00), (0.55, 0.30, 0.10),
                 (0.60, 1.00, 0.40), (1.00, 0.60, 0.75), (0.45, 0.00, 0.60), (0.00, 0.45, 0.45),
                 (1.00, 1.00, 1.00), (0.50, 0.50, 0.00), (0.40, 0.60, 1.00), (0.70, 0.00, 0.25)]
#: Colours nearer than this (Euclidean, r, g, b in 0..1) count as the same on a preview.
MIN_COLOR_DISTANCE = 0.25


def distinct_colors(colors: Sequence[Color], min_distance: float = MIN_COLOR_DISTANCE) -> List[Color]:
    """``colors`` with each one that is within ``min_distance`` of an earlier one replaced by the
    spare colour farthest from all chosen so far; the others are kept as they are."""
    chosen: List[Color] = []
    for color in colors:
        rgb = tuple(float(c) for c in np.clip(np.asarray(color, dtype=float).reshape(-1)[:3], 0, 1))
        if chosen and min(np.linalg.norm(np.subtract(rgb, c)) for c in chosen) < min_distance:
            rgb = max(_SPARE_COLORS, key=lambda s: min(np.linalg.norm(np.subtract(s, c)) for c in chosen))
        chosen.append(rgb)
    return chosen


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


def _font():
    """DejaVu Sans (covers Latin, Greek, Cyrillic, ... ) when installed, else Pillow's own fonts."""
    from PIL import ImageFont

    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, 12)
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=12)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _add_legend(picture, labelled: Sequence[Tuple[Color, str]], caption: str = ""):
    """``picture`` with a black strip below it: ``caption``, then each label beside a colour swatch."""
    from PIL import Image, ImageDraw

    font = _font()
    labelled = [(color, _printable(label, font)) for color, label in labelled]
    if caption:
        labelled.insert(0, (None, _printable(caption, font)))
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
        x = _LEGEND_PADDING
        if color is not None:  # the caption has no swatch
            fill = tuple(int(round(c)) for c in _color_255(color))
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
