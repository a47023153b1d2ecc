"""A small, offline training dataset: one stylised character drawn procedurally in varied scenes.

Demos and tests need a character dataset on a fresh machine without downloading anything, so this draws
"Mika" with Pillow and numpy: the same oval face, skin tone, violet bob, teal jacket with a yellow star
badge and navy trousers in every image, in a different pose (position, size, head tilt, arms, legs) over a
different background (gradients, sky and hills, a room, a beach, a night city, stripes, dots, a mosaic).

Everything comes from ``numpy.random.default_rng(seed)``, so a seed always gives the same bytes. Images are
drawn at twice the size and reduced with Lanczos: edges stay crisp (a good sharpness score) without jaggies.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from core.datasets.images import hamming_distance, perceptual_hash

Color = tuple[int, int, int]
Point = tuple[float, float]

# The character's identity: these never vary between images.
SKIN: Color = (238, 190, 158)
SKIN_SHADE: Color = (214, 158, 128)
HAIR: Color = (118, 42, 148)
HAIR_LIGHT: Color = (168, 92, 196)
JACKET: Color = (0, 150, 152)
JACKET_DARK: Color = (0, 104, 108)
SHIRT: Color = (250, 246, 236)
TROUSERS: Color = (38, 44, 78)
SHOES: Color = (248, 248, 248)
BADGE: Color = (255, 204, 40)
EYES: Color = (44, 30, 56)
MOUTH: Color = (196, 70, 96)
BLUSH: Color = (244, 150, 150)
GOLD: Color = (230, 180, 40)
OUTLINE: Color = (34, 24, 40)

_SUPERSAMPLE = 2
# Different images of one subject must not look like near-duplicates to the dataset check (phash <= 4).
_MIN_PHASH_DISTANCE = 5
_MAX_ATTEMPTS = 20


@dataclass(frozen=True)
class Pose:
    cx: float  # horizontal centre, fraction of the width
    ground: float  # feet line, fraction of the height
    scale: float  # 1.0: the figure is about 80 % of the image height
    tilt: float  # head tilt in degrees, positive = counter-clockwise
    arms: tuple[tuple[float, float], tuple[float, float]]  # (upper, fore) degrees from straight down, outward +
    legs: tuple[float, float]  # degrees from straight down, outward +
    gaze: float  # pupils' horizontal offset, -1 (left) .. 1 (right)


# Arm poses (left, right) chosen so the set reads as different photos of one person.
_ARM_POSES: tuple[tuple[tuple[float, float], tuple[float, float]], ...] = (
    ((12, 6), (12, 6)),  # relaxed
    ((12, 6), (125, 170)),  # waving
    ((45, -45), (45, -45)),  # hands on hips
    ((150, 165), (150, 165)),  # both arms up
    ((12, 6), (90, 90)),  # pointing
    ((90, 175), (90, 175)),  # flexing
    ((15, -120), (20, 8)),  # hand on heart
    ((60, 20), (60, 20)),  # arms out, "ta-da"
)


# --- public -----------------------------------------------------------------------------------------


def generate_demo_images(count: int = 15, *, seed: int = 0, size: int = 512) -> list[tuple[str, bytes]]:
    """``count`` PNG images (``demo_01.png`` ...) of one character, deterministic for ``seed``."""
    if count < 0 or size < 64:
        raise ValueError("count must be >= 0 and size >= 64")
    rng = np.random.default_rng(seed)
    digits = max(2, len(str(count)))
    images: list[tuple[str, bytes]] = []
    hashes: list[str] = []
    for index in range(count):
        image = _distinct_image(index, rng, size, hashes)
        hashes.append(perceptual_hash(image))
        buffer = io.BytesIO()
        image.save(buffer, "PNG", optimize=True)
        images.append((f"demo_{index + 1:0{digits}d}.png", buffer.getvalue()))
    return images


# --- composition ------------------------------------------------------------------------------------


def _distinct_image(index: int, rng: np.random.Generator, size: int, hashes: list[str]) -> Image.Image:
    """Draws until the image is no near-duplicate of an earlier one (rarely needs a second try)."""
    image = _draw_scene(index, rng, size)
    for _ in range(_MAX_ATTEMPTS):
        candidate = perceptual_hash(image)
        if all(hamming_distance(candidate, other) >= _MIN_PHASH_DISTANCE for other in hashes):
            break
        image = _draw_scene(index + int(rng.integers(1, 1000)), rng, size)
    return image


def _draw_scene(index: int, rng: np.random.Generator, size: int) -> Image.Image:
    big = size * _SUPERSAMPLE
    background = _BACKGROUNDS[index % len(_BACKGROUNDS)]
    canvas = background(rng, big).convert("RGBA")
    _draw_character(canvas, _random_pose(index, rng))
    return canvas.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)


def _random_pose(index: int, rng: np.random.Generator) -> Pose:
    scale = float(rng.uniform(0.62, 1.0))
    # The hair top is about 0.83 * scale of the height above the feet: keep the head in the frame.
    ground = float(rng.uniform(max(0.85 * scale + 0.03, 0.84), 0.96))
    half_width = 0.25 * scale
    arms = _ARM_POSES[index % len(_ARM_POSES)]
    jitter = rng.uniform(-8, 8, size=4)
    return Pose(
        cx=float(rng.uniform(half_width + 0.05, 0.95 - half_width)),
        ground=ground,
        scale=scale,
        tilt=float(rng.uniform(-18, 18)),
        arms=((arms[0][0] + jitter[0], arms[0][1] + jitter[1]), (arms[1][0] + jitter[2], arms[1][1] + jitter[3])),
        legs=(float(rng.uniform(2, 14)), float(rng.uniform(2, 14))),
        gaze=float(rng.uniform(-1, 1)),
    )


# --- the character ----------------------------------------------------------------------------------


def _draw_character(canvas: Image.Image, pose: Pose) -> None:
    width, height = canvas.size
    u = pose.scale * height / 10  # one "unit": the figure is about 8 units tall
    cx, ground = pose.cx * width, pose.ground * height
    hip_y = ground - 3.3 * u
    shoulder_y = hip_y - 2.4 * u
    outline = max(2, round(u * 0.06))
    draw = ImageDraw.Draw(canvas)

    for side, angle in ((-1, pose.legs[0]), (1, pose.legs[1])):
        _draw_leg(draw, (cx + side * 0.38 * u, hip_y), side, angle, u, outline)
    _draw_torso(draw, cx, shoulder_y, hip_y, u, outline)
    for side, (upper, fore) in ((-1, pose.arms[0]), (1, pose.arms[1])):
        _draw_arm(draw, (cx + side * 0.9 * u, shoulder_y + 0.25 * u), side, upper, fore, u, outline)
    # Neck, then the head on its own layer so it can tilt around the neck.
    draw.rectangle((cx - 0.22 * u, shoulder_y - 0.45 * u, cx + 0.22 * u, shoulder_y + 0.1 * u), fill=SKIN_SHADE)
    _paste_head(canvas, (cx, shoulder_y - 0.3 * u), pose, u, outline)


def _limb(draw: ImageDraw.ImageDraw, points: list[Point], color: Color, thickness: float, outline: int) -> None:
    """A thick outlined stroke with round joints and ends."""
    for fill, extra in ((OUTLINE, outline), (color, 0)):
        w = round(thickness + 2 * extra)
        draw.line(points, fill=fill, width=w, joint="curve")
        for x, y in (points[0], points[-1]):
            r = w / 2
            draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)


def _segment_end(start: Point, side: int, angle: float, length: float) -> Point:
    radians = math.radians(angle)
    return start[0] + side * math.sin(radians) * length, start[1] + math.cos(radians) * length


def _draw_leg(
    draw: ImageDraw.ImageDraw, hip: Point, side: int, angle: float, u: float, outline: int
) -> None:
    foot = _segment_end(hip, side, angle, 3.1 * u)
    _limb(draw, [hip, foot], TROUSERS, 0.62 * u, outline)
    x, y = foot
    toe = x + side * 0.35 * u
    draw.ellipse((min(x, toe) - 0.3 * u, y - 0.1 * u, max(x, toe) + 0.3 * u, y + 0.32 * u), fill=SHOES,
                 outline=OUTLINE, width=outline)


def _draw_torso(draw: ImageDraw.ImageDraw, cx: float, top: float, bottom: float, u: float, outline: int) -> None:
    jacket = [(cx - 1.0 * u, top), (cx + 1.0 * u, top), (cx + 0.78 * u, bottom + 0.2 * u),
              (cx - 0.78 * u, bottom + 0.2 * u)]
    draw.polygon(jacket, fill=JACKET, outline=OUTLINE, width=outline)
    shirt = [(cx - 0.32 * u, top), (cx + 0.32 * u, top), (cx, top + 1.3 * u)]
    draw.polygon(shirt, fill=SHIRT, outline=OUTLINE, width=outline)
    # Lapels and a hem band in the darker teal give the jacket some structure.
    draw.line([(cx - 0.32 * u, top), (cx - 0.12 * u, top + 1.5 * u)], fill=JACKET_DARK, width=outline * 2)
    draw.line([(cx + 0.32 * u, top), (cx + 0.12 * u, top + 1.5 * u)], fill=JACKET_DARK, width=outline * 2)
    draw.rectangle((cx - 0.8 * u, bottom, cx + 0.8 * u, bottom + 0.2 * u), fill=JACKET_DARK)
    _star(draw, (cx + 0.58 * u, top + 0.75 * u), 0.22 * u, BADGE, outline)


def _star(draw: ImageDraw.ImageDraw, center: Point, radius: float, color: Color, outline: int) -> None:
    points = []
    for i in range(10):
        r = radius if i % 2 == 0 else radius * 0.45
        a = math.pi / 2 + i * math.pi / 5
        points.append((center[0] + r * math.cos(a), center[1] - r * math.sin(a)))
    draw.polygon(points, fill=color, outline=OUTLINE, width=max(1, outline // 2))


def _draw_arm(
    draw: ImageDraw.ImageDraw, shoulder: Point, side: int, upper: float, fore: float, u: float, outline: int
) -> None:
    elbow = _segment_end(shoulder, side, upper, 1.35 * u)
    wrist = _segment_end(elbow, side, fore, 1.2 * u)
    _limb(draw, [shoulder, elbow, wrist], JACKET, 0.46 * u, outline)
    r = 0.25 * u
    draw.ellipse((wrist[0] - r, wrist[1] - r, wrist[0] + r, wrist[1] + r), fill=SKIN, outline=OUTLINE, width=outline)


def _paste_head(canvas: Image.Image, neck: Point, pose: Pose, u: float, outline: int) -> None:
    side = round(5 * u)
    layer = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    c = side / 2
    pivot = (c, c + 1.0 * u)  # the neck, in layer coordinates
    _draw_head(draw, c, u, pose.gaze, outline)
    rotated = layer.rotate(pose.tilt, resample=Image.Resampling.BICUBIC, center=pivot)
    offset = (round(neck[0] - pivot[0]), round(neck[1] - pivot[1]))
    # paste (unlike alpha_composite) clips a layer that sticks out of the canvas.
    canvas.paste(rotated, offset, rotated)


def _draw_head(draw: ImageDraw.ImageDraw, c: float, u: float, gaze: float, outline: int) -> None:
    rx, ry = 0.82 * u, 0.98 * u
    # The bob: hair behind the face reaching the jaw.
    draw.rounded_rectangle((c - 1.08 * u, c - 1.2 * u, c + 1.08 * u, c + 0.75 * u), radius=0.7 * u,
                           fill=HAIR, outline=OUTLINE, width=outline)
    draw.ellipse((c - rx, c - ry, c + rx, c + ry), fill=SKIN, outline=OUTLINE, width=outline)
    # Ears with gold earrings.
    for s in (-1, 1):
        ex = c + s * rx
        draw.ellipse((ex - 0.14 * u, c - 0.05 * u, ex + 0.14 * u, c + 0.3 * u), fill=SKIN_SHADE, outline=OUTLINE,
                     width=max(1, outline // 2))
        draw.ellipse((ex - 0.08 * u, c + 0.32 * u, ex + 0.08 * u, c + 0.48 * u), fill=GOLD)
    # Bangs: a cap over the forehead with a side sweep and a highlight.
    draw.chord((c - 1.0 * u, c - 1.25 * u, c + 1.0 * u, c + 0.1 * u), 180, 360, fill=HAIR, outline=OUTLINE,
               width=outline)
    draw.polygon([(c - 0.9 * u, c - 0.58 * u), (c + 0.2 * u, c - 0.58 * u), (c - 0.55 * u, c - 0.2 * u)], fill=HAIR)
    draw.arc((c - 0.7 * u, c - 1.05 * u, c + 0.5 * u, c - 0.35 * u), 200, 290, fill=HAIR_LIGHT, width=outline * 2)
    _draw_face(draw, c, u, gaze, outline)


def _draw_face(draw: ImageDraw.ImageDraw, c: float, u: float, gaze: float, outline: int) -> None:
    for s in (-1, 1):
        ex, ey = c + s * 0.34 * u, c - 0.05 * u
        draw.ellipse((ex - 0.17 * u, ey - 0.2 * u, ex + 0.17 * u, ey + 0.2 * u), fill=(255, 255, 255),
                     outline=OUTLINE, width=max(1, outline // 2))
        px = ex + gaze * 0.06 * u
        draw.ellipse((px - 0.1 * u, ey - 0.11 * u, px + 0.1 * u, ey + 0.13 * u), fill=EYES)
        draw.ellipse((px - 0.02 * u, ey - 0.08 * u, px + 0.04 * u, ey - 0.02 * u), fill=(255, 255, 255))
        draw.line([(ex - 0.2 * u, ey - 0.32 * u), (ex + 0.18 * u, ey - 0.36 * u + s * 0.02 * u)], fill=HAIR,
                  width=outline * 2)
        draw.ellipse((ex - 0.16 * u, c + 0.22 * u, ex + 0.16 * u, c + 0.36 * u), fill=BLUSH)
    draw.line([(c, c + 0.05 * u), (c - 0.05 * u, c + 0.25 * u)], fill=SKIN_SHADE, width=outline)
    draw.arc((c - 0.28 * u, c + 0.2 * u, c + 0.28 * u, c + 0.58 * u), 20, 160, fill=MOUTH, width=outline * 2)


# --- backgrounds ------------------------------------------------------------------------------------


def _pastel(rng: np.random.Generator, low: int = 150, high: int = 250) -> Color:
    r, g, b = (int(v) for v in rng.integers(low, high, size=3))
    return r, g, b


def _vertical_gradient(size: int, top: Color, bottom: Color) -> Image.Image:
    t = np.linspace(0.0, 1.0, size)[:, None, None]
    rows = (1 - t) * np.array(top, dtype=np.float64) + t * np.array(bottom, dtype=np.float64)
    return Image.fromarray(np.broadcast_to(rows, (size, size, 3)).round().astype(np.uint8), "RGB")


def _bg_gradient(rng: np.random.Generator, size: int) -> Image.Image:
    image = _vertical_gradient(size, _pastel(rng), _pastel(rng, 90, 200))
    draw = ImageDraw.Draw(image)
    # A studio floor line and a few soft-edged discs keep it from being a plain wash.
    floor = int(size * 0.82)
    draw.rectangle((0, floor, size, size), fill=_pastel(rng, 120, 210))
    for _ in range(5):
        r = float(rng.uniform(0.04, 0.12)) * size
        x, y = float(rng.uniform(0, size)), float(rng.uniform(0, size * 0.7))
        draw.ellipse((x - r, y - r, x + r, y + r), outline=_pastel(rng), width=max(4, size // 100))
    return image


def _bg_sky(rng: np.random.Generator, size: int) -> Image.Image:
    image = _vertical_gradient(size, (70, 140, 230), (190, 225, 250))
    draw = ImageDraw.Draw(image)
    sx, sy, sr = float(rng.uniform(0.1, 0.9)) * size, float(rng.uniform(0.08, 0.3)) * size, size * 0.07
    draw.ellipse((sx - sr, sy - sr, sx + sr, sy + sr), fill=(255, 226, 90))
    for _ in range(int(rng.integers(2, 5))):
        x, y = float(rng.uniform(0, size)), float(rng.uniform(0.05, 0.4)) * size
        for dx, dy, r in ((0, 0, 0.06), (0.06, -0.02, 0.07), (0.12, 0, 0.05)):
            rr = r * size
            draw.ellipse((x + dx * size - rr, y + dy * size - rr, x + dx * size + rr, y + dy * size + rr),
                         fill=(250, 250, 252))
    horizon = float(rng.uniform(0.55, 0.72)) * size
    for i in range(3):
        hx = float(rng.uniform(-0.2, 1.2)) * size
        green = (60 + 25 * i, 150 + 20 * i, 70 + 10 * i)
        draw.ellipse((hx - 0.5 * size, horizon - 0.12 * size, hx + 0.5 * size, horizon + 0.5 * size), fill=green)
    draw.rectangle((0, horizon + 0.1 * size, size, size), fill=(90, 170, 80))
    return image


def _bg_room(rng: np.random.Generator, size: int) -> Image.Image:
    wall, floor_y = _pastel(rng, 170, 240), int(float(rng.uniform(0.68, 0.8)) * size)
    image = Image.new("RGB", (size, size), wall)
    draw = ImageDraw.Draw(image)
    wood = (int(rng.integers(140, 190)), int(rng.integers(95, 130)), 70)
    draw.rectangle((0, floor_y, size, size), fill=wood)
    for i in range(1, 8):  # floorboards
        y = floor_y + (size - floor_y) * i / 8
        draw.line([(0, y), (size, y)], fill=(wood[0] - 40, wood[1] - 30, 40), width=max(2, size // 300))
    draw.rectangle((0, floor_y - size * 0.03, size, floor_y), fill=(245, 245, 240))  # skirting board
    wx = float(rng.uniform(0.05, 0.6)) * size
    draw.rectangle((wx, size * 0.12, wx + size * 0.32, size * 0.5), fill=(150, 200, 245), outline=(250, 250, 250),
                   width=size // 60)
    draw.line([(wx + size * 0.16, size * 0.12), (wx + size * 0.16, size * 0.5)], fill=(250, 250, 250),
              width=size // 80)
    fx = (wx + size * 0.45) % (size * 0.8)
    draw.rectangle((fx, size * 0.2, fx + size * 0.16, size * 0.36), fill=_pastel(rng, 60, 200), outline=(90, 60, 30),
                   width=size // 100)
    return image


def _bg_stripes(rng: np.random.Generator, size: int) -> Image.Image:
    colors = [_pastel(rng, 120, 250) for _ in range(3)]
    period = int(rng.integers(size // 14, size // 7))
    angle = float(rng.choice([0.0, 45.0, 90.0, -30.0]))
    yy, xx = np.mgrid[0:size, 0:size]
    along = xx * math.cos(math.radians(angle)) + yy * math.sin(math.radians(angle))
    band = (along // period).astype(np.int64) % len(colors)
    return Image.fromarray(np.array(colors, dtype=np.uint8)[band], "RGB")


def _bg_dots(rng: np.random.Generator, size: int) -> Image.Image:
    image = Image.new("RGB", (size, size), _pastel(rng, 180, 250))
    draw = ImageDraw.Draw(image)
    dot, step = _pastel(rng, 90, 200), int(rng.integers(size // 12, size // 7))
    r = step * float(rng.uniform(0.18, 0.3))
    for row, y in enumerate(range(0, size + step, step)):
        for x in range(-step, size + step, step):
            xo = x + (step / 2 if row % 2 else 0)
            draw.ellipse((xo - r, y - r, xo + r, y + r), fill=dot)
    return image


def _bg_mosaic(rng: np.random.Generator, size: int) -> Image.Image:
    cells = int(rng.integers(8, 20))
    palette = np.array([_pastel(rng, 80, 250) for _ in range(4)], dtype=np.uint8)
    tiles = Image.fromarray(palette[rng.integers(0, len(palette), size=(cells, cells))], "RGB")
    image = tiles.resize((size, size), Image.Resampling.NEAREST)
    # Fine grain on top: a textured wall rather than flat tiles.
    grain = rng.normal(0, 10, size=(size, size, 1))
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.float64) + grain, 0, 255).astype(np.uint8), "RGB")


def _bg_city(rng: np.random.Generator, size: int) -> Image.Image:
    image = _vertical_gradient(size, (20, 20, 60), (120, 60, 120))
    draw = ImageDraw.Draw(image)
    x = 0.0
    while x < size:
        w, h = float(rng.uniform(0.08, 0.2)) * size, float(rng.uniform(0.25, 0.7)) * size
        shade = int(rng.integers(30, 70))
        draw.rectangle((x, size - h, x + w, size), fill=(shade, shade, shade + 20))
        for wy in np.arange(size - h + size * 0.03, size - size * 0.03, size * 0.05):
            for wx in np.arange(x + size * 0.02, x + w - size * 0.03, size * 0.04):
                if rng.random() < 0.55:
                    draw.rectangle((wx, wy, wx + size * 0.015, wy + size * 0.025), fill=(255, 220, 120))
        x += w + float(rng.uniform(0, 0.03)) * size
    # A pavement in front of the buildings, so the figure stands on something.
    kerb = size * 0.82
    draw.rectangle((0, kerb, size, size), fill=(88, 84, 100))
    draw.line([(0, kerb), (size, kerb)], fill=(150, 146, 160), width=size // 100)
    return image


def _bg_beach(rng: np.random.Generator, size: int) -> Image.Image:
    image = _vertical_gradient(size, (120, 190, 240), (220, 240, 250))
    draw = ImageDraw.Draw(image)
    sea_top, sand_top = float(rng.uniform(0.42, 0.55)) * size, float(rng.uniform(0.68, 0.78)) * size
    draw.rectangle((0, sea_top, size, sand_top), fill=(30, 120, 180))
    for y in np.arange(sea_top + size * 0.03, sand_top, size * 0.04):
        for x in np.arange(float(rng.uniform(0, size * 0.1)), size, size * 0.12):
            box = (x, y, x + size * 0.08, y + size * 0.03)
            draw.arc(box, 200, 340, fill=(220, 240, 250), width=max(2, size // 250))
    draw.rectangle((0, sand_top, size, size), fill=(238, 214, 160))
    umbrella_x = float(rng.uniform(0.1, 0.9)) * size
    draw.pieslice((umbrella_x - size * 0.14, sand_top - size * 0.2, umbrella_x + size * 0.14, sand_top),
                  180, 360, fill=(230, 70, 70))
    draw.line([(umbrella_x, sand_top - size * 0.1), (umbrella_x, sand_top + size * 0.06)], fill=(90, 70, 50),
              width=size // 120)
    return image


def _bg_spotlight(rng: np.random.Generator, size: int) -> Image.Image:
    yy, xx = np.mgrid[0:size, 0:size] / size
    cx, cy = float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.3, 0.6))
    distance = np.clip(np.hypot(xx - cx, yy - cy) / 0.75, 0, 1)[..., None]
    inner, outer = np.array(_pastel(rng, 200, 255), float), np.array(_pastel(rng, 30, 110), float)
    pixels = (1 - distance) * inner + distance * outer
    image = Image.fromarray(pixels.round().astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    floor = int(size * float(rng.uniform(0.8, 0.9)))
    draw.line([(0, floor), (size, floor)], fill=tuple(int(v) for v in outer), width=size // 150)
    return image


_BACKGROUNDS: tuple[Callable[[np.random.Generator, int], Image.Image], ...] = (
    _bg_sky,
    _bg_room,
    _bg_stripes,
    _bg_gradient,
    _bg_beach,
    _bg_mosaic,
    _bg_city,
    _bg_dots,
    _bg_spotlight,
)
