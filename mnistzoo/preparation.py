"""Pictures of digits as MNIST was made of them: numpy and Pillow only.

MNIST's digits were size-normalised to fit a 20x20 box keeping their aspect ratio (anti-aliased),
then placed in a 28x28 image with their centre of mass at the centre. A photo or scan of a digit
somewhere on a page, dark ink on light paper, looks nothing like that; :func:`prepare` makes it so:

1. greyscale (transparent pixels count as white paper);
2. polarity: dark ink on light paper is inverted to the dataset's light-on-dark (``invert`` overrides);
3. background and noise suppressed: the paper's level (a plane, for uneven lighting) is subtracted,
   faint texture set to zero, and specks (blobs much smaller than the digit's), ruled lines and the
   edges of a scan (blobs crossing the whole picture) removed;
4. cropped to the ink, ignoring the outermost 0.2 % of its mass;
5. strokes thinner than MNIST's (a fine pen on a large scan) thickened before scaling down;
6. scaled to fit 20x20 keeping the aspect ratio, and placed in 28x28 by centre of mass.

:func:`resize` is the plain greyscale resize to 28x28, kept for comparison.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidInput, literal

MAX_PIXELS = 40_000_000  # a larger picture (e.g. a decompression bomb) is refused before decoding
SIDE = 28
TRIM = 0.002  # share of the ink's mass ignored at each edge when cropping
FAINT = 0.2  # ink below this share of the ink level is background texture or noise
MNIST_STROKE = 2.0  # typical MNIST stroke width, in pixels of the 20x20 box
MIN_CONTRAST = 24.0
BLOB = 0.1  # blobs with less than this share of the largest blob's ink are specks  # grey levels between paper and ink below which a picture counts as blank


@dataclass(frozen=True)
class Style:
    """How a dataset placed its pictures: the box they were fitted to, how they were centred, strokes."""

    box: int  # the longer side is scaled to this many pixels
    by_mass: bool  # centred by centre of mass (else by the middle of the bounding box)
    strokes: bool  # thin strokes are thickened to the dataset's width


STYLES = {"mnist": Style(20, True, True),  # LeCun et al.: 20x20 box, centre of mass in 28x28
          "fashion_mnist": Style(28, False, False)}  # Xiao et al.: longest edge 28, centred


def open_picture(item: Any) -> Any:
    """A PIL image from a path or a PIL image, refusing huge or undecodable pictures with ``InvalidInput`` (a ``ValueError``)."""
    from PIL import Image, UnidentifiedImageError

    if type(item).__module__.startswith("PIL."):
        picture = item
    else:
        name = literal(item)
        if Path(item).is_dir():
            raise InvalidInput(f"image {name}: is a directory; give PNG or JPEG files")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                picture = Image.open(item, formats=["PNG", "JPEG"])
        except FileNotFoundError:
            raise InvalidInput(f"image {name}: no such file") from None
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError, Image.DecompressionBombWarning,
                SyntaxError) as exc:
            raise InvalidInput(f"image {name}: not a readable PNG or JPEG file, or truncated "
                             f"({type(exc).__name__}); give an intact PNG or JPEG") from None
    if picture.width * picture.height > MAX_PIXELS:
        raise InvalidInput(f"image of {picture.width}x{picture.height} pixels: larger than the {MAX_PIXELS:,} pixels "
                         "accepted (a decompression bomb?); scale the picture down first")
    try:
        picture.load()
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidInput(f"image: cannot decode its pixels, the file is truncated or corrupt "
                         f"({type(exc).__name__}); give an intact PNG or JPEG") from None
    return picture


def grey(picture: Any) -> np.ndarray:
    """Greyscale pixels (float32, 0-255) of a PIL image; transparent parts count as white paper."""
    from PIL import Image

    if picture.mode in ("RGBA", "LA", "PA") or (picture.mode == "P" and "transparency" in picture.info):
        paper = Image.new("RGBA", picture.size, (255, 255, 255, 255))
        paper.alpha_composite(picture.convert("RGBA"))
        picture = paper
    return np.asarray(picture.convert("L"), dtype=np.float32)


def resize(image: Any, *, invert: bool = False) -> np.ndarray:
    """The plain preparation: greyscale, resized to 28x28 (Lanczos), optionally inverted."""
    from PIL import Image

    pixels = _as_grey(image)
    if pixels.shape != (SIDE, SIDE):
        pixels = np.asarray(Image.fromarray(pixels, mode="F").resize((SIDE, SIDE), Image.Resampling.LANCZOS))
    pixels = np.clip(pixels, 0, 255).astype(np.float32)
    return 255 - pixels if invert else pixels


def prepare(image: Any, *, invert: bool | None = None, dataset: str = "mnist") -> np.ndarray:
    """A 28x28 float32 image of raw 0-255 pixels, white digit on black, made the way MNIST was.

    ``image``: a PNG/JPEG path, a PIL image or a 2-D array of 0-255 grey levels. ``invert``: None
    detects the polarity (the paper is the most common grey level), True/False forces it.
    ``dataset="fashion_mnist"`` places the item as Fashion-MNIST did (longest edge 28, centred).
    Raises ``InvalidInput`` (a ``ValueError``) for a blank picture.
    """
    if dataset not in STYLES:
        raise InvalidInput(f"dataset={dataset!r}: choose one of {', '.join(STYLES)}")
    style = STYLES[dataset]
    pixels = _as_grey(image)
    dark_on_light = float(np.median(pixels)) > 127.5 if invert is None else invert
    ink = _digit_only(_ink(255 - pixels if dark_on_light else pixels))
    rows, cols = _extent(ink.sum(1)), _extent(ink.sum(0))
    crop = _thicken(ink[rows, cols], style.box) if style.strokes else ink[rows, cols]
    return _centre(_fit(crop, style.box), style.by_mass) * 255


def _as_grey(image: Any) -> np.ndarray:
    if isinstance(image, (str, os.PathLike)) or type(image).__module__.startswith("PIL."):
        return grey(open_picture(image))
    pixels = np.asarray(image, dtype=np.float32)
    if pixels.ndim != 2 or min(pixels.shape) == 0:
        raise InvalidInput(f"image: expected a 2-D array of grey levels, got shape {pixels.shape}")
    return pixels


def _paper(x: np.ndarray) -> tuple[np.ndarray, float]:
    """The paper's level as a plane (uneven lighting) fitted robustly to the pixels, and its noise's spread."""
    h, w = x.shape
    step = max(1, int(np.sqrt(h * w / 100_000)))  # fit on about 100k pixels
    yy, xx = np.mgrid[0:h:step, 0:w:step]
    sample = x[::step, ::step]
    design = np.stack([np.ones(sample.size), yy.ravel() / h, xx.ravel() / w], axis=1)
    band = max(1, min(sample.shape) // 20)
    border = np.zeros(sample.shape, dtype=bool)
    border[:band], border[-band:], border[:, :band], border[:, -band:] = True, True, True, True
    keep = border.ravel()  # start from the sheet's edges: paper, however much of the middle the ink covers
    for _ in range(3):  # least squares, then again on every pixel it explains
        coef, *_ = np.linalg.lstsq(design[keep], sample.ravel()[keep], rcond=None)
        residual = sample.ravel() - design @ coef
        spread = max(1.4826 * float(np.median(np.abs(residual[keep] - np.median(residual[keep])))), 1.0)
        keep = np.abs(residual) < 3 * spread  # never empty: a grey level of spread at least
    rows, cols = np.arange(h)[:, None] / h, np.arange(w)[None, :] / w
    return coef[0] + coef[1] * rows + coef[2] * cols, spread


def _ink(x: np.ndarray) -> np.ndarray:
    """Ink intensity 0-1 of light-on-dark grey levels: the paper (and its lighting) subtracted, noise zeroed."""
    plane, noise = _paper(x)
    above = x - plane
    strokes = above[above > max(4 * noise, MIN_CONTRAST / 2)]
    ink_level = float(np.percentile(strokes, 90)) if strokes.size else 0.0
    if ink_level < MIN_CONTRAST:
        raise InvalidInput(f"image is blank: no ink stands out from the paper by {MIN_CONTRAST:.0f} grey levels "
                         f"or more (found {ink_level:.0f}); give a picture with a visible digit on it")
    ink = np.clip(above / ink_level, 0, 1).astype(np.float32)
    ink[ink < max(FAINT, 3 * noise / ink_level)] = 0
    return ink


def _digit_only(ink: np.ndarray, grid: int = 128) -> np.ndarray:
    """``ink`` without specks: only blobs holding at least ``BLOB`` of the largest blob's ink are kept.

    Blobs are 8-connected regions of a max-pooled grid of at most ``grid`` cells a side, so strokes
    a few pixels apart count as one blob and a scan of any size is labelled quickly.
    """
    h, w = ink.shape
    f = -(-max(h, w) // grid)
    padded = np.zeros((-(-h // f) * f, -(-w // f) * f), dtype=np.float32)
    padded[:h, :w] = ink
    cells = padded.reshape(padded.shape[0] // f, f, padded.shape[1] // f, f)
    mass, present = cells.sum(axis=(1, 3)), cells.max(axis=(1, 3)) > 0
    labels = np.zeros(present.shape, dtype=np.int32)
    totals = [0.0]
    for start in zip(*np.nonzero(present)):
        if labels[start]:
            continue
        totals.append(0.0)
        labels[start], stack = len(totals) - 1, [start]
        while stack:
            r, c = stack.pop()
            totals[-1] += float(mass[r, c])
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    rr, cc = r + dr, c + dc
                    if 0 <= rr < labels.shape[0] and 0 <= cc < labels.shape[1] and present[rr, cc] \
                            and not labels[rr, cc]:
                        labels[rr, cc] = labels[r, c]
                        stack.append((rr, cc))
    totals_ = np.array(totals)
    lines = [i for i in range(1, len(totals)) if _is_rule(labels == i)]
    if len(lines) < len(totals) - 1:  # ruled lines and scanner edges go, unless nothing else is there
        totals_[lines] = 0
    kept = np.nonzero(totals_ >= BLOB * totals_.max())[0]
    keep = np.isin(labels, kept[kept > 0])
    return ink * np.repeat(np.repeat(keep, f, axis=0), f, axis=1)[:h, :w]


def _is_rule(blob: np.ndarray) -> bool:
    """Ruled lines and the edges of a scan: a blob crossing the picture one way and thin the other, or a
    sparse frame crossing it both ways (lines meeting at the corners)."""
    rows, cols = np.nonzero(blob)
    height, width = np.ptp(rows) + 1, np.ptp(cols) + 1
    wide, tall = width >= 0.9 * blob.shape[1], height >= 0.9 * blob.shape[0]
    thin = (wide and height <= 0.1 * blob.shape[0]) or (tall and width <= 0.1 * blob.shape[1])
    return thin or (wide and tall and rows.size < 0.05 * height * width)


def _extent(mass: np.ndarray) -> slice:
    """Rows (or columns) holding the ink, less the outermost ``TRIM`` of its mass at each end."""
    cumulative = np.cumsum(mass) / mass.sum()
    first = int(np.searchsorted(cumulative, TRIM, side="right"))
    last = int(np.searchsorted(cumulative, 1 - TRIM, side="left"))
    return slice(first, max(last, first) + 1)


def _thicken(crop: np.ndarray, box: int) -> np.ndarray:
    """Widen strokes that would end up thinner than MNIST's once the crop is scaled to the box."""
    from PIL import Image, ImageFilter

    scale = max(crop.shape) / box  # source pixels per box pixel
    mask = crop > 0.5
    area = int(mask.sum())
    if scale <= 1 or area == 0:
        return crop
    inner = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    edge = max(area - int(inner.sum()), 1)
    width = 2 * area / edge  # a stroke of width w and length L: area wL, edge pixels about 2L
    grow = int(round(MNIST_STROKE * scale - width))
    if grow < 2:
        return crop
    size = grow + 1 if grow % 2 == 0 else grow  # MaxFilter takes odd sizes
    return np.asarray(Image.fromarray(crop, mode="F").filter(ImageFilter.MaxFilter(min(size, 31))))


def _fit(crop: np.ndarray, box: int) -> np.ndarray:
    """The crop scaled (anti-aliased) so that its longer side is ``box`` pixels, ink renormalised to 0-1."""
    from PIL import Image

    h, w = crop.shape
    scale = box / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    fitted = np.clip(np.asarray(Image.fromarray(crop, mode="F").resize(size, Image.Resampling.LANCZOS)), 0, None)
    return fitted / fitted.max() if fitted.max() > 0 else fitted


def _centre(digit: np.ndarray, by_mass: bool) -> np.ndarray:
    """``digit`` placed in a 28x28 image, its centre of mass (or its middle) at the centre, kept inside."""
    h, w = digit.shape
    total = digit.sum()
    if total <= 0:
        raise InvalidInput("image is blank: no ink left after preparation; give a picture with a digit on it")
    cy = float((digit.sum(1) * np.arange(h)).sum() / total) if by_mass else (h - 1) / 2
    cx = float((digit.sum(0) * np.arange(w)).sum() / total) if by_mass else (w - 1) / 2
    top = min(max(int(round(SIDE / 2 - 0.5 - cy)), 0), SIDE - h)
    left = min(max(int(round(SIDE / 2 - 0.5 - cx)), 0), SIDE - w)
    out = np.zeros((SIDE, SIDE), dtype=np.float32)
    out[top:top + h, left:left + w] = digit
    return out


# ----------------------------------------------------------------------------- the input parser

SHAPES = "(28,28), (N,28,28), (N,784) or (N,28,28,1)"
PREPARATIONS = ("mnist", "resize", "none")


def as_images(images: Any, *, invert: bool | None = None, prepare: str | None = None,
              dataset: str = "mnist") -> np.ndarray:
    """Turn any accepted input into float32 (N,28,28) raw 0-255 pixels, white digit on black.

    Accepted: uint8 or float arrays shaped (28,28), (N,28,28), (N,784) or (N,28,28,1) with 0-255
    pixels, used as they are (the dataset's form); PNG/JPEG paths and PIL images, alone or in a
    list. ``prepare``: ``"mnist"`` (the default for pictures: :func:`prepare`), ``"resize"`` (plain
    greyscale resize) or ``"none"``; a 28x28 picture is taken to be in the dataset's form and passes
    unchanged unless ``prepare`` is given. ``invert``: None detects the polarity under
    ``"mnist"`` (else means False); True/False forces it. ``dataset`` picks how pictures are placed
    (see :func:`prepare`).
    """
    if prepare not in (None, *PREPARATIONS):
        raise InvalidInput(f"prepare={prepare!r}: choose one of {', '.join(PREPARATIONS)}")
    if isinstance(images, (str, os.PathLike)) or _is_picture(images):
        images = [images]
    if isinstance(images, (list, tuple)) and images and all(
            isinstance(i, (str, os.PathLike)) or _is_picture(i) for i in images):
        return np.stack([_picture(i, invert, prepare, dataset) for i in images]).astype(np.float32)
    pixels = _array_pixels(np.asarray(images))
    if prepare == "mnist":
        return np.stack([_picture(p, invert, "mnist", dataset) for p in pixels])
    return 255.0 - pixels if invert else pixels


def _is_picture(obj: Any) -> bool:
    return type(obj).__module__.startswith("PIL.")


def _picture(item: Any, invert: bool | None, mode: str | None, dataset: str) -> np.ndarray:
    """One picture (or 2-D array) prepared as ``mode`` says (None: by its form)."""
    pixels = grey(open_picture(item)) if not isinstance(item, np.ndarray) else item
    if mode is None:
        mode = "none" if pixels.shape == (SIDE, SIDE) else "mnist"  # 28x28: the dataset's own form
    if mode == "mnist":
        return prepare(pixels, invert=invert, dataset=dataset)
    return resize(pixels, invert=bool(invert))


def _array_pixels(a: np.ndarray) -> np.ndarray:
    if a.dtype != np.uint8 and not np.issubdtype(a.dtype, np.floating):
        raise InvalidInput(f"images: expected uint8 or float pixels 0-255, got dtype {a.dtype}; "
                         "convert with .astype(np.uint8) or .astype(np.float32)")
    if a.shape == (SIDE, SIDE):
        a = a[None]
    elif a.ndim == 2 and a.shape[1] == SIDE * SIDE:
        a = a.reshape(-1, SIDE, SIDE)
    elif a.ndim == 4 and a.shape[1:] == (SIDE, SIDE, 1):
        a = a[..., 0]
    elif a.ndim != 3 or a.shape[1:] != (SIDE, SIDE):
        raise InvalidInput(f"images: expected shape {SHAPES}, got {a.shape}")
    if len(a) == 0:
        raise InvalidInput(f"images: expected at least one image shaped {SHAPES}, got none")
    if not np.isfinite(a).all():
        raise InvalidInput("images: expected pixel values in 0-255, found NaN or infinity")
    if a.min() < 0 or a.max() > 255:
        raise InvalidInput(f"images: expected pixel values in 0-255, found {a.min():g} to {a.max():g}")
    return a.astype(np.float32)


def save_inputs(images: np.ndarray, path: Path, zoom: int = 4) -> Path:
    """Write (N,28,28) model inputs side by side, each ``zoom`` times larger, as one greyscale PNG (atomically)."""
    from PIL import Image

    from ._io import atomic_path

    strip = np.concatenate([np.pad(np.clip(im, 0, 255), ((0, 0), (0, 2)), constant_values=96)
                            for im in images], axis=1)
    picture = Image.fromarray(strip.astype(np.uint8)).resize((strip.shape[1] * zoom, SIDE * zoom),
                                                            Image.Resampling.NEAREST)
    with atomic_path(Path(path), suffix=".png") as tmp:
        picture.save(tmp, format="PNG")
    return Path(path)
