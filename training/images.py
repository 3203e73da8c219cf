"""Decoding remote-sensing images into 8-bit RGB.

RS archives hold more than 8-bit RGB. The rule, applied to the pixel array of any file:

1. Layout: a 3-D array whose first axis is small (<= 16) and whose last is not (> 16) is taken as bands-first
   (planar TIFF) and moved to bands-last.
2. Bands: 1 band (grey) is repeated to RGB; 2 bands are grey + alpha (alpha dropped); 3 bands are RGB; 4 or more
   bands: bands `rgb_bands` (default 0, 1, 2) are taken as R, G, B — most products store R, G, B first (e.g. an
   RGBA PNG, or R-G-B-NIR GeoTIFFs); pass `rgb_bands=(2, 1, 0)` for B-G-R-NIR orderings. Palette images are
   expanded through their palette; alpha is dropped, not composited.
3. Depth: 8-bit bands are kept as they are. Any other type (16-bit, 32-bit, float) is stretched per band from its
   2nd to its 98th percentile onto 0..255, the default contrast stretch of RS viewers such as QGIS; constant
   bands become 0.

TIFFs are read with `tifffile` (first page), which keeps 16-bit and multi-band data; everything else with PIL.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

STRETCH_PERCENTILES = (2.0, 98.0)
TIFF_SUFFIXES = (".tif", ".tiff")


class ImageDecodeError(ValueError):
    """An image file that cannot be decoded (missing, truncated, or an unsupported layout)."""


def load_rs_image(path: str | os.PathLike, rgb_bands: tuple[int, int, int] = (0, 1, 2)) -> Image.Image:
    """Open any RS image file as an 8-bit RGB PIL image, following the module's rule."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ImageDecodeError(f"{path}: image file not found.")
    try:
        array = _read_array(path)
    except ImageDecodeError:
        raise
    except Exception as error:  # PIL and tifffile raise many types for broken files
        raise ImageDecodeError(f"{path}: cannot decode image ({type(error).__name__}: {error}).") from error
    return Image.fromarray(to_rgb_uint8(array, rgb_bands=rgb_bands, source=path))


def to_rgb_uint8(array: np.ndarray, rgb_bands=(0, 1, 2), source: str = "array") -> np.ndarray:
    """Apply the layout, band and depth rule to a pixel array; returns an (H, W, 3) uint8 array."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[0] <= 16 < array.shape[-1]:
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise ImageDecodeError(f"{source}: expected a 2-D or 3-D pixel array, got shape {array.shape}.")
    bands = array.shape[-1]
    if bands in (1, 2):
        array = np.repeat(array[..., :1], 3, axis=-1)
    elif bands >= 4 or tuple(rgb_bands) != (0, 1, 2):
        if max(rgb_bands) >= bands:
            raise ImageDecodeError(f"{source}: rgb_bands {tuple(rgb_bands)} asked of an image with {bands} bands.")
        array = array[..., list(rgb_bands)]
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    return _stretch(array.astype(np.float64))


def _stretch(array: np.ndarray) -> np.ndarray:
    out = np.zeros(array.shape, dtype=np.uint8)
    for band in range(array.shape[-1]):
        values = array[..., band]
        low, high = np.nanpercentile(values, STRETCH_PERCENTILES)
        if high > low:
            scaled = (np.nan_to_num(values, nan=low) - low) / (high - low)
            out[..., band] = np.round(np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)
    return out


def _read_array(path: str) -> np.ndarray:
    if path.lower().endswith(TIFF_SUFFIXES):
        # tifffile keeps 16-bit and multi-band data (PIL silently keeps only the high byte of 16-bit RGB);
        # PIL remains the fallback for TIFF compressions tifffile cannot decode without extra codecs.
        import tifffile

        try:
            return tifffile.imread(path, key=0)
        except Exception:
            pass
    with Image.open(path) as image:
        image.load()  # forces a full decode: truncated files fail here
        if image.mode == "P":
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        if image.mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
            image = image.convert("RGB")
        return np.asarray(image)
