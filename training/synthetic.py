"""A generated aerial caption set: procedurally drawn top-down scenes with grounded captions.

Every scene records what was drawn (class, object count, colours, positions) and its five captions are written
from those facts, so a model can learn the image-to-text mapping. The set is written in the native formats the
real data sets ship in (Karpathy json + `.tif`, NWPU category json, an `imagefolder`), so every loader is tested on
files shaped like the real ones.

    rscapret data synth --out DIR --n-images 2000 --seed 0
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # train / val / test, per class
GREEN, GRASS, DARK_GREEN = (70, 140, 60), (110, 160, 80), (30, 90, 40)
GREY, DARK_GREY, WATER, SAND = (128, 128, 128), (80, 80, 85), (40, 90, 170), (220, 200, 140)
COLOURS = {"red": (200, 40, 40), "white": (240, 240, 240), "blue": (50, 80, 200), "yellow": (230, 210, 40),
           "black": (20, 20, 20)}


@dataclass
class SceneFacts:
    """What was drawn in one image: the ground truth its captions are written from."""

    category: str
    count: int | None = None  # number of countable objects, None for uncountable scenes
    noun: str | None = None  # singular noun of the counted object
    colour: str | None = None
    place: str | None = None  # where the main feature is (left, right, top, bottom, center)
    captions: list[str] = field(default_factory=list)


def _verb(count: int, plural: str) -> str:
    """Agreement for the few verbs the captions use: 'are' -> 'is', 'stand' -> 'stands'."""
    return plural if count != 1 else {"are": "is"}.get(plural, plural + "s")


def _there(count: int) -> str:
    return "there is" if count == 1 else "there are"


def _n(count: int, noun: str) -> str:
    plural = noun if count == 1 else (noun[:-1] + "ies" if noun.endswith("y") else noun + "s")
    return f"{NUMBER_WORDS[count]} {plural}"


# ---------------------------------------------------------------------------------------------- scene painters
# Each painter draws on a 64-unit canvas (scaled by `s`) and returns the facts and five grounded captions.


def _farmland(rng, draw, s):
    count = int(rng.randint(2, 6))
    names = ["green", "yellow", "brown"]
    fill = {"green": GREEN, "yellow": (210, 190, 80), "brown": (140, 100, 60)}
    width = 64 / count
    used = set()
    for i in range(count):
        name = names[(i + int(rng.randint(3))) % 3]
        used.add(name)
        draw.rectangle([i * width * s, 0, (i + 1) * width * s, 64 * s], fill=fill[name])
        draw.line([i * width * s, 0, i * width * s, 64 * s], fill=(90, 70, 40), width=max(1, int(s)))
    colours = " and ".join(sorted(used))
    caps = [
        f"{_n(count, 'field')} of farmland are arranged in stripes",
        f"the farmland is divided into {_n(count, 'field')}",
        f"{_there(count)} {_n(count, 'field')} of {colours} crops in the farmland",
        f"{colours} farmland with {_n(count, 'field')} side by side",
        f"many crops grow in the farmland of {_n(count, 'field')}",
    ]
    return SceneFacts("farmland", count, "field", colours, None, caps)


def _forest(rng, draw, s):
    draw.rectangle([0, 0, 64 * s, 64 * s], fill=DARK_GREEN)
    for _ in range(60):
        x, y, r = rng.uniform(0, 64), rng.uniform(0, 64), rng.uniform(2, 5)
        shade = tuple(int(c + rng.randint(-15, 15)) for c in (40, 110, 50))
        draw.ellipse([(x - r) * s, (y - r) * s, (x + r) * s, (y + r) * s], fill=shade)
    caps = [
        "a dense forest with many green trees",
        "the forest is covered by dark green trees",
        "many trees grow closely together in the forest",
        "a large area of forest with thick trees",
        "green trees fill the whole forest",
    ]
    return SceneFacts("forest", captions=caps)


PLACES = {"left": (16, 32), "right": (48, 32), "top": (32, 16), "bottom": (32, 48), "center": (32, 32)}


def _lake(rng, draw, s):
    draw.rectangle([0, 0, 64 * s, 64 * s], fill=GRASS)
    place = str(rng.choice(list(PLACES)))
    cx, cy = PLACES[place]
    rx, ry = rng.uniform(10, 15), rng.uniform(8, 13)
    draw.ellipse([(cx - rx) * s, (cy - ry) * s, (cx + rx) * s, (cy + ry) * s], fill=WATER)
    caps = [
        f"a blue lake lies in the {place} of the green land",
        f"there is a lake in the {place} surrounded by grass",
        f"the lake in the {place} is surrounded by green meadow",
        f"a calm lake with blue water in the {place}",
        f"green grass around a lake in the {place}",
    ]
    return SceneFacts("lake", place=place, captions=caps)


def _river(rng, draw, s):
    draw.rectangle([0, 0, 64 * s, 64 * s], fill=GRASS)
    count = int(rng.randint(0, 3))  # bridges
    vertical = bool(rng.randint(2))
    points = []
    for i in range(9):
        t = i * 8
        wiggle = 32 + 8 * np.sin(t / 10 + rng.uniform(0, 6))
        points.append((wiggle * s, t * s) if vertical else (t * s, wiggle * s))
    draw.line(points, fill=WATER, width=int(9 * s))
    for b in range(count):
        t = (20 + 24 * b) * s
        draw.rectangle([20 * s, t - 2 * s, 44 * s, t + 2 * s] if vertical else [t - 2 * s, 20 * s, t + 2 * s, 44 * s],
                       fill=GREY)
    direction = "from top to bottom" if vertical else "from left to right"
    bridges = "no bridge" if count == 0 else _n(count, "bridge")
    caps = [
        f"a river flows {direction} through the green land",
        f"a winding river with {bridges} crosses the area",
        f"there is a river with {bridges} in the green field",
        f"a blue river runs {direction}",
        f"the river with {bridges} winds through the meadow",
    ]
    return SceneFacts("river", count, "bridge", None, direction, caps)


def _objects_on_grid(rng, count, size, area=(6, 6, 58, 58)):
    """Non-overlapping object positions on a coarse grid inside `area`."""
    x0, y0, x1, y1 = area
    cols, rows = int((x1 - x0) // size), int((y1 - y0) // size)
    cells = rng.choice(cols * rows, size=count, replace=False)
    return [(x0 + (c % cols) * size + size / 2, y0 + (c // cols) * size + size / 2) for c in cells]


def _residential(rng, draw, s):
    draw.rectangle([0, 0, 64 * s, 64 * s], fill=GRASS)
    draw.rectangle([0, 29 * s, 64 * s, 35 * s], fill=DARK_GREY)
    count = int(rng.randint(2, 7))
    colour = str(rng.choice(["red", "white"]))
    top = _objects_on_grid(rng, count, 12, area=(2, 2, 62, 26))
    for x, y in top:
        draw.rectangle([(x - 4) * s, (y - 4) * s, (x + 4) * s, (y + 4) * s], fill=COLOURS[colour])
    caps = [
        f"{_n(count, 'house')} with {colour} roofs are beside a road",
        f"{_there(count)} {_n(count, 'house')} in the residential area",
        f"a residential area with {_n(count, 'house')} along the road",
        f"{_n(count, 'building')} with {colour} roofs stand near a gray road",
        f"some green grass around {_n(count, 'house')} of the residential area",
    ]
    return SceneFacts("residential", count, "house", colour, None, caps)


def _airport(rng, draw, s):
    draw.rectangle([0, 0, 64 * s, 64 * s], fill=(150, 150, 140))
    draw.rectangle([0, 44 * s, 64 * s, 54 * s], fill=DARK_GREY)
    for x in range(2, 64, 8):
        draw.line([x * s, 49 * s, (x + 4) * s, 49 * s], fill=COLOURS["white"], width=max(1, int(s)))
    count = int(rng.randint(1, 5))
    for x, y in _objects_on_grid(rng, count, 14, area=(4, 4, 60, 40)):
        draw.rectangle([(x - 6) * s, (y - 1.5) * s, (x + 6) * s, (y + 1.5) * s], fill=COLOURS["white"])
        draw.rectangle([(x - 1.5) * s, (y - 6) * s, (x + 1.5) * s, (y + 6) * s], fill=COLOURS["white"])
    caps = [
        f"{_n(count, 'airplane')} {_verb(count, 'are')} parked near the runway of the airport",
        f"{_there(count)} {_n(count, 'airplane')} at the airport",
        f"an airport with {_n(count, 'airplane')} and a long runway",
        f"{_n(count, 'white airplane')} {_verb(count, 'stand')} beside the airport runway",
        f"the airport has a gray runway and {_n(count, 'airplane')}",
    ]
    return SceneFacts("airport", count, "airplane", "white", None, caps)


def _parking(rng, draw, s):
    draw.rectangle([0, 0, 64 * s, 64 * s], fill=GREY)
    for x in range(0, 64, 10):
        draw.line([x * s, 0, x * s, 64 * s], fill=COLOURS["white"], width=max(1, int(s)))
    count = int(rng.randint(2, 9))
    colour = str(rng.choice(["red", "blue", "yellow", "black"]))  # not white: the parking lines are white
    for x, y in _objects_on_grid(rng, count, 10, area=(2, 2, 62, 62)):
        draw.rectangle([(x - 2.5) * s, (y - 4) * s, (x + 2.5) * s, (y + 4) * s], fill=COLOURS[colour])
    caps = [
        f"{_n(count, 'car')} {_verb(count, 'are')} parked in the parking lot",
        f"{_there(count)} {_n(count, colour + ' car')} in the parking lot",
        f"a parking lot with {_n(count, 'car')} in it",
        f"{_n(count, colour + ' car')} {_verb(count, 'stand')} in a gray parking lot",
        f"the parking lot holds {_n(count, 'car')} between white lines",
    ]
    return SceneFacts("parking lot", count, "car", colour, None, caps)


def _beach(rng, draw, s):
    place = str(rng.choice(["left", "right", "top", "bottom"]))
    draw.rectangle([0, 0, 64 * s, 64 * s], fill=SAND)
    box = {"left": [0, 0, 26, 64], "right": [38, 0, 64, 64], "top": [0, 0, 64, 26], "bottom": [0, 38, 64, 64]}[place]
    draw.rectangle([v * s for v in box], fill=WATER)
    count = int(rng.randint(1, 5))
    free = {"left": (30, 4, 62, 60), "right": (2, 4, 34, 60), "top": (4, 30, 60, 62), "bottom": (4, 2, 60, 34)}[place]
    for x, y in _objects_on_grid(rng, count, 8, area=free):
        draw.ellipse([(x - 3) * s, (y - 3) * s, (x + 3) * s, (y + 3) * s], fill=COLOURS["red"])
    caps = [
        f"a yellow beach with the sea on the {place}",
        f"{_n(count, 'umbrella')} {_verb(count, 'stand')} on the beach next to the sea",
        f"the sea lies on the {place} of a sandy beach",
        f"{_there(count)} {_n(count, 'red umbrella')} on the beach",
        f"a beach with {_n(count, 'umbrella')} and blue sea on the {place}",
    ]
    return SceneFacts("beach", count, "umbrella", "red", place, caps)


def _baseball(rng, draw, s):
    draw.rectangle([0, 0, 64 * s, 64 * s], fill=GREEN)
    count = int(rng.randint(1, 3))
    centres = [(32, 32)] if count == 1 else [(18, 32), (46, 32)]
    for cx, cy in centres:
        r = 12 if count == 1 else 10
        draw.pieslice([(cx - r) * s, (cy - r) * s, (cx + r) * s, (cy + r) * s], 200, 340, fill=(180, 130, 80))
        draw.polygon([(cx * s, (cy - r / 2) * s), ((cx + 3) * s, (cy - r / 2 + 3) * s), (cx * s, (cy - r / 2 + 6) * s),
                      ((cx - 3) * s, (cy - r / 2 + 3) * s)], fill=(120, 170, 90))
    caps = [
        f"{_n(count, 'baseball field')} on the green grass",
        f"{_there(count)} {_n(count, 'baseball field')} in the park",
        f"the green area has {_n(count, 'baseball field')} with brown sand",
        f"{_n(count, 'baseball diamond')} surrounded by green lawn",
        f"a park with {_n(count, 'baseball field')}",
    ]
    return SceneFacts("baseball field", count, "baseball field", "brown", None, caps)


def _freeway(rng, draw, s):
    draw.rectangle([0, 0, 64 * s, 64 * s], fill=GRASS)
    vertical = bool(rng.randint(2))
    road = [22, 0, 42, 64] if vertical else [0, 22, 64, 42]
    draw.rectangle([v * s for v in road], fill=DARK_GREY)
    if vertical:
        draw.line([32 * s, 0, 32 * s, 64 * s], fill=COLOURS["yellow"], width=max(1, int(s)))
    else:
        draw.line([0, 32 * s, 64 * s, 32 * s], fill=COLOURS["yellow"], width=max(1, int(s)))
    count = int(rng.randint(1, 6))
    colour = str(rng.choice(["red", "white", "blue"]))
    area = (23, 2, 41, 62) if vertical else (2, 23, 62, 41)
    for x, y in _objects_on_grid(rng, count, 9, area=area):
        half = (2, 3) if vertical else (3, 2)
        draw.rectangle([(x - half[0]) * s, (y - half[1]) * s, (x + half[0]) * s, (y + half[1]) * s],
                       fill=COLOURS[colour])
    direction = "from top to bottom" if vertical else "from left to right"
    caps = [
        f"a freeway runs {direction} with {_n(count, 'car')}",
        f"{_there(count)} {_n(count, colour + ' car')} on the freeway",
        f"{_n(count, 'car')} {_verb(count, 'drive')} on the gray freeway",
        f"the freeway crosses the green land {direction}",
        f"a straight freeway with {_n(count, 'car')} and a yellow line",
    ]
    return SceneFacts("freeway", count, "car", colour, direction, caps)


def _storage(rng, draw, s):
    draw.rectangle([0, 0, 64 * s, 64 * s], fill=(170, 165, 150))
    count = int(rng.randint(2, 7))
    for x, y in _objects_on_grid(rng, count, 14, area=(4, 4, 60, 60)):
        draw.ellipse([(x - 6) * s, (y - 6) * s, (x + 6) * s, (y + 6) * s], fill=COLOURS["white"],
                     outline=DARK_GREY)
    caps = [
        f"{_n(count, 'storage tank')} {_verb(count, 'stand')} in the industrial area",
        f"{_there(count)} {_n(count, 'white storage tank')}",
        f"an industrial area with {_n(count, 'round storage tank')}",
        f"{_n(count, 'storage tank')} {_verb(count, 'are')} arranged on the ground",
        f"the ground holds {_n(count, 'white tank')} for storage",
    ]
    return SceneFacts("storage tanks", count, "storage tank", "white", None, caps)


def _desert(rng, draw, s):
    draw.rectangle([0, 0, 64 * s, 64 * s], fill=(225, 190, 120))
    for i in range(6):
        y = rng.uniform(0, 64)
        draw.arc([-10 * s, (y - 6) * s, 74 * s, (y + 6) * s], 0, 180, fill=(190, 150, 90), width=max(1, int(2 * s)))
    caps = [
        "a yellow desert with sand dunes",
        "the desert is covered by waves of sand",
        "sand dunes spread across the bare desert",
        "a dry desert without plants",
        "the yellow desert shows curved dunes",
    ]
    return SceneFacts("desert", captions=caps)


PAINTERS = {
    "farmland": _farmland, "forest": _forest, "lake": _lake, "river": _river, "residential": _residential,
    "airport": _airport, "parking lot": _parking, "beach": _beach, "baseball field": _baseball,
    "freeway": _freeway, "storage tanks": _storage, "desert": _desert,
}
CATEGORIES = tuple(PAINTERS)


def draw_scene(category: str, seed: int, image_size: int = 64) -> tuple[Image.Image, SceneFacts]:
    """Draw one scene of `category` (deterministic for `seed`) and return it with its facts and captions."""
    rng = np.random.RandomState(seed)
    image = Image.new("RGB", (image_size, image_size))
    facts = PAINTERS[category](rng, ImageDraw.Draw(image), image_size / 64)
    noise = rng.normal(0, 6, (image_size, image_size, 3))  # sensor noise, so no two images are identical
    pixels = np.clip(np.asarray(image, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels), facts


@dataclass
class GeneratedRecord:
    filename: str
    split: str  # train / val / test, as the Karpathy json files name them
    facts: SceneFacts


def generate_records(n_images: int, seed: int = 0) -> list[GeneratedRecord]:
    """The scene plan: `n_images` spread evenly over the categories, split 80/10/10 within each category."""
    records = []
    per_class = [n_images // len(CATEGORIES) + (i < n_images % len(CATEGORIES)) for i in range(len(CATEGORIES))]
    rng = np.random.RandomState(seed)
    for category, count in zip(CATEGORIES, per_class):
        order = rng.permutation(count)
        n_train, n_val = int(round(count * SPLIT_FRACTIONS[0])), int(round(count * SPLIT_FRACTIONS[1]))
        for rank, index in enumerate(order):
            split = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
            stem = category.replace(" ", "")
            records.append(GeneratedRecord(f"{stem}_{index + 1:04d}", split, SceneFacts(category)))
    return sorted(records, key=lambda r: r.filename)


def write_synthetic_dataset(out: str | os.PathLike, n_images: int = 2000, seed: int = 0, image_size: int = 64) -> Path:
    """Write the generated set in three native formats under `out`:

    - `karpathy/`: `dataset_synth.json` (RSICD/UCM/Sydney layout) and `images/*.tif`
    - `nwpu/`: `dataset_nwpu.json` (category-keyed, `raw`..`raw_4`) and `<category>/*.jpg`
    - `imagefolder/`: `train/`, `validation/`, `test/` with `metadata.jsonl` (`file_name`, `captions`)
    - `facts.jsonl`: what was drawn in each image (the captions' ground truth)
    """
    out = Path(out)
    for sub in ("karpathy/images", "nwpu", "imagefolder/train", "imagefolder/validation", "imagefolder/test"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    karpathy, nwpu, folder_meta, facts_lines = [], {}, {"train": [], "validation": [], "test": []}, []
    split_dir = {"train": "train", "val": "validation", "test": "test"}
    for imgid, record in enumerate(tqdm(generate_records(n_images, seed), desc="drawing scenes", unit="img")):
        image, facts = draw_scene(record.facts.category, seed * 1_000_003 + imgid, image_size)
        name = record.filename
        image.save(out / "karpathy" / "images" / f"{name}.tif")
        category_dir = out / "nwpu" / facts.category.replace(" ", "_")
        category_dir.mkdir(exist_ok=True)
        image.save(category_dir / f"{name}.jpg", quality=95)
        image.save(out / "imagefolder" / split_dir[record.split] / f"{name}.png")

        sentids = list(range(imgid * 5, imgid * 5 + 5))
        karpathy.append({
            "filename": f"{name}.tif", "imgid": imgid, "split": record.split, "sentids": sentids,
            "sentences": [{"raw": c, "tokens": c.split(), "imgid": imgid, "sentid": i} for c, i in zip(facts.captions, sentids)],
        })
        entry = {"filename": f"{name}.jpg", "imgid": imgid, "split": record.split, "sentids": sentids, "raw": facts.captions[0]}
        entry.update({f"raw_{k}": c for k, c in enumerate(facts.captions[1:], start=1)})
        nwpu.setdefault(facts.category.replace(" ", "_"), []).append(entry)
        folder_meta[split_dir[record.split]].append({"file_name": f"{name}.png", "captions": facts.captions,
                                                     "category": facts.category})
        facts_lines.append(json.dumps({"filename": name, "split": record.split, **asdict(facts)}))

    (out / "karpathy" / "dataset_synth.json").write_text(json.dumps({"dataset": "synth", "images": karpathy}))
    (out / "nwpu" / "dataset_nwpu.json").write_text(json.dumps(nwpu))
    for split, rows in folder_meta.items():
        (out / "imagefolder" / split / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "facts.jsonl").write_text("\n".join(facts_lines) + "\n")
    return out
