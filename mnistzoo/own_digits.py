"""Digits as people hand them over: a seeded generator of pictures that are not in MNIST's 28x28 form.

Each picture is a test-set image redrawn larger (bicubic), with thinner or bolder strokes and a small
slant, or (for digits) a numeral rendered from a font, placed off-centre on a larger sheet of paper:
dark ink on light paper or light on dark, uneven lighting, sensor noise, a few specks, and often
JPEG compression. Labels are known, so preparation methods can be compared on the same pictures.
The same seed always gives the same set.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FONT_DIRS = (Path("/usr/share/fonts"),)


@dataclass(frozen=True)
class OwnDigit:
    picture: object  # a PIL image, as decoded from its PNG or JPEG bytes
    label: int
    dark_on_light: bool
    kind: str  # "redrawn" or "font"


def _fonts() -> list[str | None]:
    """Pillow's built-in font (None) and any TrueType fonts installed, in a stable order."""
    found = sorted(str(p) for d in FONT_DIRS if d.is_dir() for p in d.rglob("*.ttf"))
    return [None, *found[:12]]


def _glyph_font(label: int, rng: np.random.Generator, fonts: list[str | None]) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    size = int(rng.integers(40, 180))
    path = fonts[int(rng.integers(len(fonts)))]
    font = ImageFont.load_default(size) if path is None else ImageFont.truetype(path, size)
    canvas = Image.new("L", (size * 2, size * 2), 0)
    stroke = int(rng.integers(0, max(1, size // 14)))
    ImageDraw.Draw(canvas).text((size // 2, size // 4), str(label), fill=255, font=font, stroke_width=stroke,
                                stroke_fill=255)
    return _crop(np.asarray(canvas, dtype=np.float32) / 255)


def _glyph_redrawn(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image, ImageFilter

    size = int(rng.integers(40, 220))
    big = Image.fromarray(image.astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
    big = big.rotate(float(rng.uniform(-12, 12)), resample=Image.Resampling.BILINEAR)
    change = int(rng.integers(-1, 3)) * max(1, size // 40)  # thinner, same, bolder
    if change:
        k = 2 * abs(change) + 1
        big = big.filter(ImageFilter.MaxFilter(min(k, 15)) if change > 0 else ImageFilter.MinFilter(min(k, 15)))
    return _crop(np.asarray(big, dtype=np.float32) / 255)


def _crop(glyph: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(glyph > 0.05)
    if rows.size == 0:
        return glyph
    return glyph[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


def _sheet(glyph: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """The glyph somewhere on a sheet of paper, with lighting, noise and specks; grey levels 0-255."""
    gh, gw = glyph.shape
    h, w = int(gh * rng.uniform(1.3, 3.5)) + 8, int(gw * rng.uniform(1.3, 3.5)) + 8
    top, left = int(rng.integers(0, h - gh + 1)), int(rng.integers(0, w - gw + 1))
    ink_map = np.zeros((h, w), dtype=np.float32)
    ink_map[top:top + gh, left:left + gw] = glyph
    for _ in range(int(rng.integers(0, 8))):  # specks of dust or ink, away from nothing in particular
        y, x, r = int(rng.integers(0, h)), int(rng.integers(0, w)), int(rng.integers(1, 3))
        ink_map[max(0, y - r):y + r, max(0, x - r):x + r] = np.maximum(ink_map[max(0, y - r):y + r,
                                                                               max(0, x - r):x + r], 0.6)
    dark_on_light = bool(rng.random() < 0.7)
    paper, ink = (rng.uniform(170, 250), rng.uniform(0, 90)) if dark_on_light else \
        (rng.uniform(0, 60), rng.uniform(180, 255))
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    lighting = rng.uniform(-20, 20) * yy + rng.uniform(-20, 20) * xx
    pixels = paper + (ink - paper) * ink_map + lighting + rng.normal(0, rng.uniform(0, 10), (h, w))
    return np.clip(pixels, 0, 255), dark_on_light


def _encode(pixels: np.ndarray, rng: np.random.Generator) -> object:
    from PIL import Image

    buffer = io.BytesIO()
    picture = Image.fromarray(pixels.astype(np.uint8))
    if rng.random() < 0.6:
        picture.save(buffer, format="JPEG", quality=int(rng.integers(30, 90)))
    else:
        picture.save(buffer, format="PNG")
    buffer.seek(0)
    return Image.open(buffer)


def make_set(images: np.ndarray, labels: np.ndarray, n: int, *, seed: int = 0,
             fonts: bool = True) -> list[OwnDigit]:
    """``n`` pictures of test-set ``images`` (and, with ``fonts``, font numerals), with their labels."""
    rng = np.random.default_rng(seed)
    typefaces = _fonts() if fonts else []
    out = []
    for _ in range(n):
        if typefaces and rng.random() < 0.2:
            label, kind = int(rng.integers(10)), "font"
            glyph = _glyph_font(label, rng, typefaces)
        else:
            j = int(rng.integers(len(images)))
            label, kind = int(labels[j]), "redrawn"
            glyph = _glyph_redrawn(images[j], rng)
        pixels, dark_on_light = _sheet(glyph, rng)
        out.append(OwnDigit(_encode(pixels, rng), label, dark_on_light, kind))
    return out
