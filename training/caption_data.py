"""Caption data sets as 🤗 `DatasetDict`s with one schema.

Every loader returns splits `train` / `validation` / `test` with the columns

    image (datasets.Image) | captions (list of str) | filename (str) | source (str) | category (str or None)

    load_caption_dataset("rsicd", root)              # also "ucm", "sydney": Karpathy json + image folder
    load_caption_dataset("nwpu", root)               # NWPU-Captions: category-keyed json, <root>/<category>/<file>
    load_caption_dataset("imagefolder", path)        # a user's set: imagefolder + metadata.jsonl / metadata.csv
    load_caption_dataset("cap4", {"rsicd": r1, "ucm": r2, "sydney": r3, "nwpu": r4})

Images are decoded with `training.images.load_rs_image` (grey, palette, RGBA, 16-bit and multi-band files become
8-bit RGB) and stored in the Arrow cache, so a data set is decoded once. A missing image, an undecodable file or a
record without captions raises `CaptionDataError` naming the file and record; with `on_error="skip"` such records
are left out and listed in the returned `DatasetDict`'s `skipped` attribute.
"""

from __future__ import annotations

import csv
import glob
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import datasets
from datasets import Dataset, DatasetDict, Features, Sequence, Value
from datasets.exceptions import DatasetGenerationError

from .images import ImageDecodeError, load_rs_image

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
SPLIT_NAMES = {"train": "train", "val": "validation", "valid": "validation", "validation": "validation",
               "test": "test", "restval": "train"}
KARPATHY_SETS = ("rsicd", "ucm", "sydney")
CAP4_SETS = ("rsicd", "ucm", "sydney", "nwpu")
FEATURES = Features({
    "image": datasets.Image(),
    "captions": Sequence(Value("string")),
    "filename": Value("string"),
    "source": Value("string"),
    "category": Value("string"),
})
IMAGE_DIR_CANDIDATES = ("images", "imgs", "RSICD_images", "UCM_images", "Sydney_images", ".")
DECODER_VERSION = 1  # part of the cache fingerprint: bump when the decoding rule changes


class CaptionDataError(ValueError):
    """A record that cannot be used: names the file and the record."""


@dataclass
class BadRecord:
    source: str
    record: str
    path: str
    reason: str


@dataclass
class _Record:
    path: str
    captions: list[str]
    filename: str
    split: str
    category: str | None
    where: str  # the record's place in its annotation file, for error messages


# ----------------------------------------------------------------------------------------------------- public API
def load_caption_dataset(name: str, root, on_error: str = "raise", rgb_bands=(0, 1, 2), **kwargs) -> DatasetDict:
    """Load a caption set by format name: rsicd, ucm, sydney, nwpu, imagefolder or cap4 (see module doc)."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"load_caption_dataset: on_error must be 'raise' or 'skip', got {on_error!r}.")
    name = name.lower().replace("-", "").replace("_", "")
    if name in ("cap4", "cap4union"):
        return _load_cap4(root, on_error, rgb_bands, **kwargs)
    if name in KARPATHY_SETS or name == "karpathy":
        records = read_karpathy_records(root, **kwargs)
    elif name in ("nwpu", "nwpucaptions"):
        records = read_nwpu_records(root, **kwargs)
    elif name == "imagefolder":
        records = read_imagefolder_records(root, **kwargs)
    else:
        raise ValueError(
            f"load_caption_dataset: unknown data set {name!r}; expected one of rsicd, ucm, sydney, nwpu, imagefolder, cap4."
        )
    source = {"karpathy": Path(root).name, "nwpucaptions": "nwpu"}.get(name, name)
    return _build(records, source, on_error, rgb_bands)


# ------------------------------------------------------------------------------------------------- format readers
def read_karpathy_records(root, annotations: str | None = None, image_dir: str | None = None) -> list[_Record]:
    """RSICD / UCM-Captions / Sydney-Captions: `{"images": [{"filename", "split", "sentences": [{"raw"}]}]}`."""
    root = Path(root)
    annotation_file = Path(annotations) if annotations else _find_one(root, "dataset*.json", "Karpathy-style json")
    data = _read_json(annotation_file)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise CaptionDataError(f"{annotation_file}: expected a json object with an 'images' list (Karpathy format).")
    images_root = Path(image_dir) if image_dir else _find_image_dir(root, [i.get("filename", "") for i in data["images"]])
    records = []
    for index, item in enumerate(data["images"]):
        where = f"{annotation_file}: images[{index}]"
        filename = _field(item, "filename", where)
        captions = [s.get("raw", "").strip() for s in item.get("sentences", []) if isinstance(s, dict)]
        category = item.get("category") or _category_from_filename(filename)
        records.append(_Record(str(images_root / filename), captions, filename,
                               _split(item.get("split"), where), category, f"{where} ({filename})"))
    return records


def read_nwpu_records(root, annotations: str | None = None) -> list[_Record]:
    """NWPU-Captions: `{category: [{"filename", "split", "raw", "raw_1".."raw_4"}]}`, images in `<root>/<category>/`."""
    root = Path(root)
    annotation_file = Path(annotations) if annotations else _find_one(root, "dataset_nwpu*.json", "NWPU json")
    data = _read_json(annotation_file)
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise CaptionDataError(f"{annotation_file}: expected a json object mapping each category to a list (NWPU format).")
    records = []
    for category, items in data.items():
        for index, item in enumerate(items):
            where = f"{annotation_file}: {category}[{index}]"
            filename = _field(item, "filename", where)
            keys = sorted((k for k in item if re.fullmatch(r"raw(_\d+)?", k)), key=lambda k: int(k[4:] or 0))
            captions = [str(item[k]).strip() for k in keys if str(item[k]).strip()]
            records.append(_Record(str(root / category / filename), captions, filename,
                                   _split(item.get("split"), where), category.replace("_", " "), f"{where} ({filename})"))
    return records


def read_imagefolder_records(root, seed: int = 0) -> list[_Record]:
    """A user's set, 🤗 imagefolder layout: images with `metadata.jsonl` or `metadata.csv` beside them.

    Captions come from a `captions` column (a list, or one string with captions separated by `|`), or from
    `caption` / `text`, or from numbered columns `caption_1`, `caption_2`, ... (`sentence_*`, `raw_*` too).
    Splits come from `train/`, `validation/` (or `val/`), `test/` folders; a flat folder is split 80/10/10.
    """
    root = Path(root)
    metadata_files = sorted(glob.glob(str(root / "**" / "metadata.jsonl"), recursive=True)) + sorted(
        glob.glob(str(root / "**" / "metadata.csv"), recursive=True))
    if not metadata_files:
        raise CaptionDataError(f"{root}: no metadata.jsonl or metadata.csv found (imagefolder format).")
    records = []
    for metadata_file in metadata_files:
        folder = Path(metadata_file).parent
        split_folder = folder.relative_to(root).parts[0] if folder != root else None
        for index, row in enumerate(_read_metadata(metadata_file)):
            where = f"{metadata_file}: row {index + 1}"
            filename = _field(row, "file_name", where)
            split = SPLIT_NAMES.get(split_folder or "", None)
            records.append(_Record(str(folder / filename), _row_captions(row), filename, split or "",
                                   row.get("category") or None, f"{where} ({filename})"))
    if all(r.split == "" for r in records):  # flat folder: a fixed 80/10/10 split by file name
        import random

        order = sorted(range(len(records)), key=lambda i: records[i].filename)
        random.Random(seed).shuffle(order)
        for rank, i in enumerate(order):
            records[i].split = "train" if rank < 0.8 * len(order) else "validation" if rank < 0.9 * len(order) else "test"
    return records


# ------------------------------------------------------------------------------------------------------- building
def _build(records: list[_Record], source: str, on_error: str, rgb_bands) -> DatasetDict:
    skipped, usable = [], []
    for record in records:
        reason = None
        if not record.captions:
            reason = "record has no captions"
        elif not os.path.isfile(record.path):
            reason = "image file not found"
        if reason is None:
            usable.append(record)
            continue
        if on_error == "raise":
            raise CaptionDataError(f"{record.where}: {reason} ({record.path}).")
        skipped.append(BadRecord(source, record.where, record.path, reason))

    splits = {}
    for split in SPLITS:
        rows = [r for r in usable if r.split == split]
        gen_kwargs = {
            "rows": [(r.path, r.captions, r.filename, r.category, r.where) for r in rows],
            "source": source, "on_error": on_error, "rgb_bands": tuple(rgb_bands),
            # the cache is keyed on these: a changed file is decoded again
            "stamps": [(os.path.getmtime(r.path), os.path.getsize(r.path)) for r in rows],
            "decoder_version": DECODER_VERSION,
        }
        if not rows:  # from_generator refuses an empty split; small user sets can have one
            splits[split] = Dataset.from_dict({name: [] for name in FEATURES}, features=FEATURES, split=split)
            continue
        try:
            splits[split] = Dataset.from_generator(_generate, gen_kwargs=gen_kwargs, features=FEATURES, split=split)
        except DatasetGenerationError as error:  # datasets wraps the generator's own error: show ours
            if isinstance(error.__cause__, CaptionDataError):
                raise error.__cause__ from None
            raise
        present = set(splits[split]["filename"])
        for r in rows:  # undecodable files: found again even when the split came from the cache
            if r.filename not in present:
                skipped.append(BadRecord(source, r.where, r.path, _decode_error(r.path, rgb_bands)))
    result = DatasetDict(splits)
    result.skipped = skipped
    if skipped:
        logger.warning("%s: skipped %d bad record(s), e.g. %s: %s", source, len(skipped), skipped[0].record,
                       skipped[0].reason)
    return result


def _generate(rows, source, on_error, rgb_bands, stamps, decoder_version):
    for path, captions, filename, category, where in rows:
        try:
            image = load_rs_image(path, rgb_bands=rgb_bands)
        except ImageDecodeError as error:
            if on_error == "raise":
                raise CaptionDataError(f"{where}: {error}") from error
            continue
        yield {"image": image, "captions": captions, "filename": filename, "source": source, "category": category}


def _decode_error(path, rgb_bands) -> str:
    try:
        load_rs_image(path, rgb_bands=rgb_bands)
        return "left out of the cached split"
    except ImageDecodeError as error:
        return str(error)


def _load_cap4(roots, on_error, rgb_bands, **kwargs) -> DatasetDict:
    if not isinstance(roots, dict) or not roots or set(roots) - set(CAP4_SETS):
        raise ValueError(f"cap4 takes a dict of roots keyed by {CAP4_SETS}, got {roots!r}.")
    parts = [load_caption_dataset(name, roots[name], on_error=on_error, rgb_bands=rgb_bands) for name in CAP4_SETS
             if name in roots]
    union = DatasetDict({s: datasets.concatenate_datasets([p[s] for p in parts]) for s in SPLITS})
    union.skipped = [bad for p in parts for bad in p.skipped]
    return union


# -------------------------------------------------------------------------------------------------------- helpers
def _read_json(path: Path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as error:
        raise CaptionDataError(f"{path}: annotation file not found.") from error
    except json.JSONDecodeError as error:
        raise CaptionDataError(f"{path}: not valid json ({error}).") from error


def _find_one(root: Path, pattern: str, what: str) -> Path:
    found = sorted(root.glob(pattern))
    if not found:
        raise CaptionDataError(f"{root}: no {what} matching {pattern!r}; pass annotations=PATH.")
    return found[0]


def _find_image_dir(root: Path, filenames: list[str]) -> Path:
    probe = next((f for f in filenames if f), "")
    for candidate in IMAGE_DIR_CANDIDATES:
        if (root / candidate / probe).is_file():
            return root / candidate
    return root / IMAGE_DIR_CANDIDATES[0]  # missing files are then reported record by record


def _field(item, key, where):
    if not isinstance(item, dict) or not item.get(key):
        raise CaptionDataError(f"{where}: record has no '{key}'.")
    return str(item[key])


def _split(value, where) -> str:
    if value not in SPLIT_NAMES:
        raise CaptionDataError(f"{where}: split {value!r} is not one of {sorted(SPLIT_NAMES)}.")
    return SPLIT_NAMES[value]


def _category_from_filename(filename: str) -> str | None:
    """RSICD-style names (`airport_12.jpg`) carry the category; purely numeric names (UCM, Sydney) do not."""
    match = re.fullmatch(r"([A-Za-z][A-Za-z ]*?)_?\d+\.\w+", filename)
    return match.group(1) if match else None


def _read_metadata(path: str) -> list[dict]:
    if path.endswith(".jsonl"):
        with open(path, encoding="utf-8") as f:
            rows = []
            for number, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as error:
                        raise CaptionDataError(f"{path}: line {number} is not valid json ({error}).") from error
            return rows
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _row_captions(row: dict) -> list[str]:
    value = row.get("captions")
    if isinstance(value, list):
        captions = value
    elif isinstance(value, str):
        captions = value.split("|")
    elif row.get("caption") or row.get("text"):
        captions = [row.get("caption") or row.get("text")]
    else:
        numbered = sorted((k for k in row if re.fullmatch(r"(caption|sentence|raw)_\d+", k)),
                          key=lambda k: int(k.rsplit("_", 1)[1]))
        captions = [row[k] for k in numbered]
    return [str(c).strip() for c in captions if c is not None and str(c).strip()]
