"""One image loader for every image the project reads: datasets, frame folders, prediction inputs.

What a file's metadata says about its pixels is applied the same way everywhere, as
:mod:`video_sparse.data.display` does for video:

- EXIF orientation (phone photos): the image is turned/flipped as a viewer shows it;
- 16-bit greyscale (PNG ``I;16``, ``I``): scaled to 8 bits (``v * 255 / 65535``), not clipped;
  32-bit float (``F``) in ``[0, 1]`` scaled by 255, otherwise clipped to ``[0, 255]``;
- transparency (``LA``, ``RGBA``, ``PA``, palette with a transparent colour): composited over white;
- CMYK (print JPEGs): converted through the embedded ICC profile when there is one (Pillow's
  plain conversion otherwise); palette, 1-bit and other modes: Pillow's conversion to RGB.

With ``min_side``, a large image is reduced while it is decoded (JPEG: DCT scaling through
``Image.draft``) or right after (other formats: integer ``Image.reduce``), never below ``min_side``
on its short side, so that memory follows the size the caller needs rather than the file's.
"""

from __future__ import annotations

import io
import logging
import os

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

EXIF_ORIENTATION = 0x0112
_TRANSPOSE = {  # EXIF orientation -> what a viewer does (Pillow's ImageOps.exif_transpose table)
    2: (Image.Transpose.FLIP_LEFT_RIGHT,),
    3: (Image.Transpose.ROTATE_180,),
    4: (Image.Transpose.FLIP_TOP_BOTTOM,),
    5: (Image.Transpose.TRANSPOSE,),
    6: (Image.Transpose.ROTATE_270,),
    7: (Image.Transpose.TRANSVERSE,),
    8: (Image.Transpose.ROTATE_90,),
}
BACKGROUND = (255, 255, 255)  #: what transparent pixels show


def load_image(path: str | os.PathLike, min_side: int | None = None) -> Image.Image:
    """Decode an image file fully as RGB, shown as a viewer shows it (see the module docstring).

    Args:
        path: the image file.
        min_side: when given, the image may be reduced (by an integer factor or JPEG DCT scaling)
            as long as its short side stays ``>= min_side`` pixels.

    Returns:
        An RGB ``PIL.Image`` (loaded; the file is closed).

    Raises:
        OSError, ValueError, SyntaxError, PIL.Image.DecompressionBombError: the file cannot be decoded.
    """
    with Image.open(path) as im:
        orientation = _orientation(im)
        if min_side and im.format == "JPEG" and im.mode in ("RGB", "L", "CMYK"):
            w, h = im.size
            scale = min_side / min(w, h)
            if scale < 1:
                im.draft(im.mode, (max(1, round(w * scale + 0.5)), max(1, round(h * scale + 0.5))))
        im.load()
        icc = im.info.get("icc_profile")
        out = _to_rgb(im, icc)
    if min_side:
        factor = min(out.size) // int(min_side)
        if factor >= 2:
            out = out.reduce(factor)
    for op in _TRANSPOSE.get(orientation, ()):
        out = out.transpose(op)
    return out


def _orientation(im: Image.Image) -> int:
    try:
        value = int(im.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # malformed EXIF: show the pixels as stored
        return 1
    return value if value in _TRANSPOSE else 1


def _to_rgb(im: Image.Image, icc: bytes | None) -> Image.Image:
    mode = im.mode
    if mode == "RGB":
        return im.copy()
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(im, dtype=np.float64)  # I;16 variants and I hold 0..65535 greyscale here
        grey = np.clip(np.round(values * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "F":
        values = np.asarray(im, dtype=np.float64)
        if values.size and np.nanmax(values) <= 1.0:
            values = values * 255.0
        grey = np.clip(np.round(np.nan_to_num(values)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "CMYK" and icc:
        try:
            from PIL import ImageCms

            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(im, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except Exception as e:  # unreadable profile: Pillow's plain conversion below
            logger.debug("CMYK profile not used (%s)", e)
    if mode in ("LA", "RGBA", "PA", "La", "RGBa") or (mode in ("P", "L", "RGB") and "transparency" in im.info):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return im.convert("RGB")
