"""``faces``: procedurally drawn cartoon faces, the offline stand-in for the Anime Face Dataset.

The Anime Face Dataset (Kaggle, about 63,600 face crops usually resized to 64×64) cannot be
downloaded without a network; these drawings let DCGAN training and ``generate`` run anywhere. They
are not that dataset, and everything that shows them says so.

Each image is 3×64×64 (``size=`` draws at another resolution) and is a pure function of
``(seed, split, index)``: the first 100 images of ``n=10000`` equal ``n=100``, and ``train`` and
``test`` come from disjoint random streams. Drawing is PIL ``ImageDraw`` on a 2× canvas, box-
downsampled for smooth edges (about 1 ms per image on one core).

Attributes (all int64 class indices; :data:`ATTRIBUTES` names the values, :func:`face_attributes`
returns them for any ``n``/``seed``/``split`` without drawing). ``label=`` picks which one is the
label (default ``hair_colour``):

================  ==========================================================================
hair_colour       black, brown, blonde, red, orange, pink, purple, blue, green, silver (uniform)
hair_style        short, bob, long, twintails
bangs             spiky, straight, swept, parted
eye_colour        blue, green, red, brown, purple, gold, pink, cyan (uniform)
eyes              open, closed (happy ^ ^)
skin              porcelain, fair, tan, brown, deep
face_shape        round, oval, pointed, square
mouth             smile, open, flat, cat
accessory         none (40%), glasses, bow, cat_ears, hat, headband (12% each)
blush             no, yes
background        8 hue bins of a pastel background: red, orange, yellow, green, cyan, blue, violet, pink
================  ==========================================================================

Position, face size, eye size and spacing, and every colour are also jittered per image.
"""

from __future__ import annotations

import colorsys
import dataclasses
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from rlgen.data.cache import cached
from rlgen.data.core import Dataset, Source, as_dataset, check_positive_int
from rlgen.errors import UsageError

DESCRIPTION = ("faces: procedurally drawn cartoon faces, the offline stand-in for the Anime Face Dataset "
               "(not the real dataset)")
DRAW_VERSION = 1  # bump when the drawing changes, so cached faces are rebuilt

HAIR_COLOURS = {"black": (42, 36, 52), "brown": (114, 72, 44), "blonde": (242, 210, 112), "red": (198, 46, 44),
                "orange": (238, 134, 52), "pink": (246, 152, 192), "purple": (140, 92, 198),
                "blue": (62, 104, 214), "green": (70, 166, 98), "silver": (214, 216, 232)}
EYE_COLOURS = {"blue": (48, 110, 224), "green": (40, 162, 80), "red": (204, 40, 52), "brown": (124, 72, 30),
               "purple": (132, 62, 194), "gold": (222, 172, 40), "pink": (232, 92, 164), "cyan": (40, 192, 204)}
SKIN_TONES = {"porcelain": (255, 234, 222), "fair": (252, 218, 190), "tan": (230, 186, 146),
              "brown": (182, 126, 92), "deep": (122, 84, 60)}
BACKGROUND_HUES = ("red", "orange", "yellow", "green", "cyan", "blue", "violet", "pink")

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "hair_colour": tuple(HAIR_COLOURS),
    "hair_style": ("short", "bob", "long", "twintails"),
    "bangs": ("spiky", "straight", "swept", "parted"),
    "eye_colour": tuple(EYE_COLOURS),
    "eyes": ("open", "closed"),
    "skin": tuple(SKIN_TONES),
    "face_shape": ("round", "oval", "pointed", "square"),
    "mouth": ("smile", "open", "flat", "cat"),
    "accessory": ("none", "glasses", "bow", "cat_ears", "hat", "headband"),
    "blush": ("no", "yes"),
    "background": BACKGROUND_HUES,
}
_PROBS: dict[str, tuple[float, ...]] = {
    "eyes": (0.88, 0.12),
    "mouth": (0.45, 0.25, 0.15, 0.15),
    "accessory": (0.40, 0.12, 0.12, 0.12, 0.12, 0.12),
    "blush": (0.6, 0.4),
}
SPLIT_STREAM = {"train": 0, "test": 1}


@dataclasses.dataclass
class FaceSpec:
    """Everything one drawing depends on: class attributes plus continuous jitter."""

    attrs: dict[str, int]
    dx: float
    dy: float
    fw: float
    fh: float
    eye_w: float
    eye_h: float
    eye_sep: float
    hair: tuple[int, int, int]
    eye: tuple[int, int, int]
    skin: tuple[int, int, int]
    bg_top: tuple[int, int, int]
    bg_bottom: tuple[int, int, int]
    clothes: tuple[int, int, int]
    accent: tuple[int, int, int]
    spikes: int
    jag: tuple[float, ...]


class _Draws:
    """Hands out one block of uniform numbers drawn up front, so sampling is a single NumPy call."""

    def __init__(self, u: np.ndarray) -> None:
        self.u, self.i = u, 0

    def uni(self, lo: float = 0.0, hi: float = 1.0) -> float:
        self.i += 1
        return lo + (hi - lo) * float(self.u[self.i - 1])

    def cat(self, probs: tuple[float, ...] | int) -> int:
        v = self.uni()
        if isinstance(probs, int):
            return min(int(v * probs), probs - 1)
        acc = 0.0
        for j, p in enumerate(probs):
            acc += p
            if v < acc:
                return j
        return len(probs) - 1


def _jitter(rgb: tuple[int, int, int], d: _Draws, amount: float) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + d.uni(-amount, amount), 0, 255)) for c in rgb)  # type: ignore[return-value]


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))  # type: ignore[return-value]


def sample_spec(seed: int, split: str, index: int) -> FaceSpec:
    """The attributes and jitter of face ``index``: a pure function of (seed, split, index)."""
    d = _Draws(np.random.default_rng([seed, SPLIT_STREAM[split], index]).random(64))
    attrs = {name: d.cat(_PROBS.get(name, len(values))) for name, values in ATTRIBUTES.items()}
    fw = d.uni(15.5, 18.0)
    hue = (attrs["background"] + d.uni(-0.35, 0.35)) / len(BACKGROUND_HUES) + 0.0
    bg_s, bg_v = d.uni(0.12, 0.35), d.uni(0.86, 0.98)
    return FaceSpec(
        attrs=attrs,
        dx=d.uni(-2.5, 2.5), dy=d.uni(-1.5, 2.5), fw=fw, fh=fw * d.uni(1.08, 1.22),
        eye_w=d.uni(3.6, 4.8), eye_h=d.uni(4.4, 6.2), eye_sep=d.uni(0.43, 0.52),
        hair=_jitter(list(HAIR_COLOURS.values())[attrs["hair_colour"]], d, 14),
        eye=_jitter(list(EYE_COLOURS.values())[attrs["eye_colour"]], d, 14),
        skin=_jitter(list(SKIN_TONES.values())[attrs["skin"]], d, 6),
        bg_top=_hsv(hue, bg_s, bg_v), bg_bottom=_hsv(hue + 0.04, min(bg_s + 0.15, 1), bg_v - 0.12),
        clothes=_hsv(d.uni(), d.uni(0.35, 0.8), d.uni(0.35, 0.9)),
        accent=_hsv(d.uni(), d.uni(0.6, 0.9), d.uni(0.75, 1.0)),
        spikes=4 + d.cat(3),
        jag=tuple(d.uni(-1, 1) for _ in range(12)),
    )


def face_attributes(n: int, seed: int = 0, split: str = "train") -> dict[str, np.ndarray]:
    """Every attribute of the first ``n`` faces of (seed, split), as int64 arrays; no drawing."""
    if split not in SPLIT_STREAM:
        raise UsageError(f"split {split!r} is not one of train, test")
    specs = [sample_spec(seed, split, i) for i in range(n)]
    return {name: np.array([s.attrs[name] for s in specs], dtype=np.int64) for name in ATTRIBUTES}


def _shade(rgb: tuple[int, int, int], f: float) -> tuple[int, int, int]:
    """Darker (f < 1) or lighter (f > 1, towards white) version of a colour."""
    if f <= 1:
        return tuple(int(c * f) for c in rgb)  # type: ignore[return-value]
    t = f - 1
    return tuple(int(c + (255 - c) * t) for c in rgb)  # type: ignore[return-value]


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    return tuple(int(x * (1 - t) + y * t) for x, y in zip(a, b))  # type: ignore[return-value]


SUPERSAMPLE = 2


def draw_face(spec: FaceSpec, size: int = 64) -> np.ndarray:
    """Render one face as a (size, size, 3) uint8 array. Coordinates below are in 64-pixel units."""
    k = size * SUPERSAMPLE / 64.0
    a = spec.attrs
    side = size * SUPERSAMPLE
    # A one-pixel-wide vertical gradient stretched sideways: far cheaper than filling every pixel in NumPy.
    grad = np.linspace(0.0, 1.0, side, dtype=np.float32)[:, None, None]
    column = np.asarray(spec.bg_top, np.float32) * (1 - grad) + np.asarray(spec.bg_bottom, np.float32) * grad
    img = Image.fromarray(column.astype(np.uint8), "RGB").resize((side, side), Image.Resampling.NEAREST)
    g = ImageDraw.Draw(img)

    def P(*xy: float) -> list[float]:
        return [v * k for v in xy]

    def pts(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        return [(x * k, y * k) for x, y in points]

    def W(w: float) -> int:
        return max(1, int(round(w * k)))

    cx, cy = 32 + spec.dx, 32 + spec.dy
    fw, fh = spec.fw, spec.fh
    hair, hair_dark, hair_light = spec.hair, _shade(spec.hair, 0.62), _shade(spec.hair, 1.35)
    skin, skin_dark, line = spec.skin, _shade(spec.skin, 0.8), _shade(spec.skin, 0.5)
    cap = (cx - fw - 4.5, cy - fh - 6, cx + fw + 4.5, cy + fh * 0.55)

    # Cat ears sit behind the hair, so they go first and the hair covers their base.
    if a["accessory"] == 3:
        for side in (-1, 1):
            bx = cx + side * fw * 0.62
            by = cy - fh - 1
            g.polygon(pts([(bx - 6 * side, by + 3), (bx + 2.5 * side, by - 11), (bx + 6.5 * side, by + 3)]),
                      fill=hair, outline=hair_dark, width=W(0.8))
            g.polygon(pts([(bx - 3 * side, by + 2), (bx + 2.2 * side, by - 7), (bx + 4 * side, by + 2)]),
                      fill=_mix(skin, (255, 140, 170), 0.5))

    # Back hair: its length is the hair style.
    style = a["hair_style"]
    if style == 2:  # long
        g.polygon(pts([(cx - fw - 5, cy - 2), (cx + fw + 5, cy - 2), (cx + fw + 9, 66), (cx - fw - 9, 66)]),
                  fill=hair, outline=hair_dark, width=W(0.8))
    elif style == 1:  # bob: cut straight at the jaw
        g.rounded_rectangle(P(cx - fw - 5.5, cy - 4, cx + fw + 5.5, cy + fh * 0.8), radius=3 * k, fill=hair,
                            outline=hair_dark, width=W(0.8))
    elif style == 3:  # twintails
        for side in (-1, 1):
            x0 = cx + side * (fw + 7)
            g.ellipse(P(x0 - 6, cy - fh * 0.7, x0 + 6, cy + fh + 10), fill=hair, outline=hair_dark, width=W(0.8))
            g.ellipse(P(x0 - 2.5, cy - fh - 1, x0 + 2.5, cy - fh + 4), fill=spec.accent)
    g.ellipse(P(*cap), fill=hair, outline=hair_dark, width=W(0.8))

    # Neck and shoulders.
    g.rectangle(P(cx - fw * 0.32, cy + fh * 0.5, cx + fw * 0.32, cy + fh + 8), fill=skin_dark)
    g.ellipse(P(cx - fw - 12, cy + fh + 4, cx + fw + 12, cy + fh + 34), fill=spec.clothes,
              outline=_shade(spec.clothes, 0.6), width=W(0.8))
    g.polygon(pts([(cx - 4, cy + fh + 4.5), (cx, cy + fh + 9), (cx + 4, cy + fh + 4.5)]), fill=skin_dark)

    # Ears, then the face itself.
    for side in (-1, 1):
        ex = cx + side * (fw - 0.5)
        g.ellipse(P(ex - 2.6, cy - 1, ex + 2.6, cy + 6), fill=skin, outline=line, width=W(0.6))
    shape = a["face_shape"]
    box = (cx - fw, cy - fh, cx + fw, cy + fh)
    if shape == 0:
        g.ellipse(P(*box), fill=skin, outline=line, width=W(0.7))
    elif shape == 1:
        g.ellipse(P(cx - fw * 0.92, cy - fh * 1.02, cx + fw * 0.92, cy + fh * 1.06), fill=skin, outline=line,
                  width=W(0.7))
    elif shape == 2:  # anime V chin: upper half of an ellipse, straight cheeks down to a point
        top = [(cx + fw * np.cos(t), cy + fh * np.sin(t)) for t in np.linspace(np.pi, 2 * np.pi, 16)]
        chin = [(cx + fw * 0.96, cy + fh * 0.35), (cx + fw * 0.55, cy + fh * 0.82), (cx, cy + fh * 1.05),
                (cx - fw * 0.55, cy + fh * 0.82), (cx - fw * 0.96, cy + fh * 0.35)]
        g.polygon(pts(top + chin), fill=skin, outline=line, width=W(0.7))
    else:
        g.rounded_rectangle(P(*box), radius=fw * 0.75 * k, fill=skin, outline=line, width=W(0.7))

    # Eyes: big anime eyes low on the face.
    ey = cy + fh * 0.12
    ew, eh = spec.eye_w, spec.eye_h
    lash = _shade(hair, 0.35) if a["hair_colour"] not in (0,) else (20, 16, 24)
    lash = _mix(lash, (30, 20, 30), 0.6)
    eye_xs = (cx - fw * spec.eye_sep, cx + fw * spec.eye_sep)
    if a["blush"]:
        for ex in eye_xs:
            g.ellipse(P(ex - 3.4, ey + eh + 0.6, ex + 3.4, ey + eh + 3.0), fill=_mix(skin, (255, 110, 130), 0.45))
    for side, ex in zip((-1, 1), eye_xs):
        # Eyebrows: thin strokes, mostly hidden by the bangs.
        g.line(pts([(ex + 3 * side, ey - eh - 3.2), (ex - 3.2 * side, ey - eh - 2.4)]), fill=hair_dark,
               width=W(0.9))
        if a["eyes"] == 1:
            g.line(pts([(ex - ew, ey + 1), (ex, ey - eh * 0.45), (ex + ew, ey + 1)]), fill=lash, width=W(1.4),
                   joint="curve")
            continue
        g.ellipse(P(ex - ew, ey - eh, ex + ew, ey + eh), fill=(255, 255, 255))
        g.ellipse(P(ex - ew * 0.8, ey - eh * 0.92, ex + ew * 0.8, ey + eh), fill=spec.eye)
        g.ellipse(P(ex - ew * 0.55, ey + eh * 0.05, ex + ew * 0.55, ey + eh * 0.9), fill=_shade(spec.eye, 1.35))
        g.ellipse(P(ex - ew * 0.4, ey - eh * 0.5, ex + ew * 0.4, ey + eh * 0.35), fill=_shade(spec.eye, 0.3))
        g.ellipse(P(ex - ew * 0.62, ey - eh * 0.68, ex - ew * 0.02, ey - eh * 0.12), fill=(255, 255, 255))
        g.ellipse(P(ex + ew * 0.22, ey + eh * 0.3, ex + ew * 0.52, ey + eh * 0.6), fill=(255, 255, 255))
        # Upper lash line: thick, with a flick at the outer corner.
        outer = side
        g.line(pts([(ex - outer * (ew + 0.6), ey - eh * 0.35), (ex - outer * ew * 0.5, ey - eh - 0.4),
                    (ex + outer * ew * 0.5, ey - eh - 0.5), (ex + outer * (ew + 1.6), ey - eh * 0.2)]),
               fill=lash, width=W(1.5), joint="curve")
        g.line(pts([(ex - ew * 0.45, ey + eh + 0.2), (ex + ew * 0.45, ey + eh + 0.2)]), fill=line, width=W(0.5))

    # Nose and mouth.
    g.line(pts([(cx + 0.2, cy + fh * 0.4), (cx + 0.8, cy + fh * 0.47)]), fill=skin_dark, width=W(0.8))
    mx, my = cx, cy + fh * 0.63
    mouth = a["mouth"]
    lip = (150, 44, 54)
    if mouth == 0:
        g.arc(P(mx - 3.2, my - 2.4, mx + 3.2, my + 1.2), 20, 160, fill=lip, width=W(0.8))
    elif mouth == 1:
        g.pieslice(P(mx - 3, my - 2.6, mx + 3, my + 3), 0, 180, fill=(160, 40, 56))
        g.ellipse(P(mx - 1.6, my + 0.9, mx + 1.6, my + 2.9), fill=(240, 120, 140))
    elif mouth == 2:
        g.line(pts([(mx - 2.2, my), (mx + 2.2, my)]), fill=lip, width=W(0.8))
    else:
        g.arc(P(mx - 3, my - 1.6, mx, my + 1.4), 0, 180, fill=lip, width=W(0.8))
        g.arc(P(mx, my - 1.6, mx + 3, my + 1.4), 0, 180, fill=lip, width=W(0.8))

    # Front hair: the bangs' lower edge over the forehead, then side locks.
    arc_top = [(cx + (fw + 4.5) * np.cos(t), (cy - fh * 0.225) + (fh * 0.775 + 6) * np.sin(t))
               for t in np.linspace(np.pi * 1.02, np.pi * 1.98, 14)]
    right, left = (cx + fw + 1.5, cy - fh * 0.05), (cx - fw - 1.5, cy - fh * 0.05)
    jag, n = spec.jag, spec.spikes
    bangs = a["bangs"]
    edge: list[tuple[float, float]] = []
    if bangs == 0:  # spiky: alternating tips and notches
        xs = np.linspace(cx + fw + 1, cx - fw - 1, 2 * n + 1)
        for j, x in enumerate(xs):
            tip = j % 2 == 1
            edge.append((x + jag[j % 12] * 0.8, cy - fh * (0.2 if tip else 0.52) + jag[(j + 3) % 12]))
    elif bangs == 1:  # straight fringe
        xs = np.linspace(cx + fw + 1, cx - fw - 1, 2 * n + 1)
        for j, x in enumerate(xs):
            edge.append((x, cy - fh * (0.3 if j % 2 else 0.36) + jag[j % 12] * 0.4))
    elif bangs == 2:  # swept to one side
        sgn = 1 if jag[0] > 0 else -1
        xs = np.linspace(cx + fw + 1, cx - fw - 1, 2 * n + 1)
        for j, x in enumerate(xs):
            t = j / (2 * n)
            base = cy - fh * (0.62 - 0.5 * (t if sgn > 0 else 1 - t))
            edge.append((x + (2.0 if j % 2 else 0) * sgn * -1, base + (2.2 if j % 2 else -0.8)))
    else:  # parted in the middle, curtains to each side
        edge = [(cx + fw + 1, cy - fh * 0.05), (cx + fw * 0.55, cy - fh * 0.35), (cx + fw * 0.15, cy - fh * 0.62),
                (cx + 0.6, cy - fh * 0.8), (cx - 0.6, cy - fh * 0.8), (cx - fw * 0.15, cy - fh * 0.62),
                (cx - fw * 0.55, cy - fh * 0.35), (cx - fw - 1, cy - fh * 0.05)]
    g.polygon(pts([left] + arc_top + [right] + edge), fill=hair, outline=hair_dark, width=W(0.8))
    if style != 0:
        for side in (-1, 1):
            x0 = cx + side * (fw + 1.5)
            g.polygon(pts([(x0, cy - fh * 0.35), (x0 - side * 4.5, cy - fh * 0.2), (x0 - side * 2.5, cy + fh * 0.45),
                           (x0 - side * 0.5, cy + fh * 0.75)]), fill=hair, outline=hair_dark, width=W(0.7))
    # Shine on the hair.
    g.arc(P(cx - fw - 1, cy - fh - 3, cx + fw + 1, cy + fh * 0.3), 215, 250, fill=hair_light, width=W(1.4))
    g.arc(P(cx - fw - 1, cy - fh - 3, cx + fw + 1, cy + fh * 0.3), 290, 320, fill=hair_light, width=W(1.4))

    # Accessories on top.
    acc = a["accessory"]
    if acc == 1:  # glasses
        frame = _shade(spec.accent, 0.5)
        for ex in eye_xs:
            g.rounded_rectangle(P(ex - ew - 1.6, ey - eh - 0.8, ex + ew + 1.6, ey + eh + 1.2), radius=2 * k,
                                outline=frame, width=W(0.9))
        g.line(pts([(eye_xs[0] + ew + 1.6, ey - 1), (eye_xs[1] - ew - 1.6, ey - 1)]), fill=frame, width=W(0.9))
    elif acc == 2:  # bow on one side of the head
        bx, by = cx + (fw * 0.55 if jag[1] > 0 else -fw * 0.55), cy - fh - 2
        g.polygon(pts([(bx, by), (bx - 6, by - 4), (bx - 6, by + 4)]), fill=spec.accent,
                  outline=_shade(spec.accent, 0.6), width=W(0.7))
        g.polygon(pts([(bx, by), (bx + 6, by - 4), (bx + 6, by + 4)]), fill=spec.accent,
                  outline=_shade(spec.accent, 0.6), width=W(0.7))
        g.ellipse(P(bx - 1.6, by - 1.6, bx + 1.6, by + 1.6), fill=_shade(spec.accent, 0.75))
    elif acc == 4:  # beret
        tilt = 2.5 if jag[2] > 0 else -2.5
        g.ellipse(P(cx - fw - 5 + tilt, cy - fh - 8, cx + fw + 5 + tilt, cy - fh + 6), fill=spec.accent,
                  outline=_shade(spec.accent, 0.6), width=W(0.8))
        g.ellipse(P(cx + tilt - 1.3, cy - fh - 9.5, cx + tilt + 1.3, cy - fh - 6.5), fill=_shade(spec.accent, 0.7))
    elif acc == 5:  # headband
        g.arc(P(cx - fw - 3.6, cy - fh - 5, cx + fw + 3.6, cy + fh * 0.4), 195, 345, fill=spec.accent, width=W(2.2))
    return np.asarray(img.reduce(SUPERSAMPLE))


def _build_faces(n: int, seed: int, split: str, size: int) -> dict[str, np.ndarray]:
    images = np.empty((n, 3, size, size), np.uint8)
    attrs = {name: np.empty(n, np.int64) for name in ATTRIBUTES}
    for i in range(n):
        spec = sample_spec(seed, split, i)
        images[i] = draw_face(spec, size).transpose(2, 0, 1)
        for name in ATTRIBUTES:
            attrs[name][i] = spec.attrs[name]
    return {"images": images, **{f"attr_{k}": v for k, v in attrs.items()}}


DEFAULT_N = {"train": 10000, "test": 1000}


def _load_faces(root: Path, split: str, cache: bool, arg: str | None, n: int | None, seed: int, size: int,
                label: str) -> Dataset:
    n = check_positive_int("faces", "n", DEFAULT_N[split] if n is None else n)
    size = check_positive_int("faces", "size", size, minimum=8)
    seed = check_positive_int("faces", "seed", seed, minimum=0)
    if label not in ATTRIBUTES:
        raise UsageError(f"dataset faces: label={label!r} is not one of {', '.join(ATTRIBUTES)}")
    key = {"n": n, "seed": seed, "split": split, "size": size, "version": DRAW_VERSION}
    arrays, hit = cached(root, f"faces-{split}", key, lambda: _build_faces(n, seed, split, size), cache)
    ds = as_dataset("faces", split, arrays, hit, DESCRIPTION, ATTRIBUTES[label], labels_key=f"attr_{label}")
    # Keep every attribute (the label one too) under its plain name.
    ds.label_name = label
    ds.extras = {k.removeprefix("attr_"): torch.from_numpy(arrays[k]) for k in arrays if k.startswith("attr_")}
    return ds


SOURCES = (Source("faces", _load_faces, {"n": None, "seed": 0, "size": 64, "label": "hair_colour"},
                "procedural cartoon faces: the offline stand-in for the Anime Face Dataset"),)
