"""`rscapret data inspect`: what a caption set holds, read from its annotations (no image is decoded)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from statistics import mean

from .caption_data import SPLITS, read_imagefolder_records, read_karpathy_records, read_nwpu_records

READERS = {"karpathy": read_karpathy_records, "nwpu": read_nwpu_records, "imagefolder": read_imagefolder_records}


def detect_format(path) -> str:
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: not a folder.")
    if list(path.glob("dataset_nwpu*.json")):
        return "nwpu"
    if list(path.glob("dataset*.json")):
        return "karpathy"
    if list(path.rglob("metadata.jsonl")) or list(path.rglob("metadata.csv")):
        return "imagefolder"
    raise ValueError(f"{path}: no dataset*.json, dataset_nwpu*.json or metadata.jsonl/csv: not a caption set.")


def inspect_caption_set(path, fmt: str = "auto", examples: int = 3) -> dict:
    fmt = detect_format(path) if fmt == "auto" else fmt
    records = READERS[fmt](path)
    report = {"path": str(path), "format": fmt, "splits": {}}
    for split in SPLITS:
        rows = [r for r in records if r.split == split]
        per_image = [len(r.captions) for r in rows]
        lengths = [len(c.split()) for r in rows for c in r.captions]
        report["splits"][split] = {
            "images": len(rows),
            "captions": sum(per_image),
            "captions_per_image": _stats(per_image),
            "caption_words": _stats(lengths),
            "missing_images": sum(not os.path.isfile(r.path) for r in rows),
            "without_captions": sum(not r.captions for r in rows),
        }
    vocabulary = Counter(w.lower() for r in records for c in r.captions for w in c.split())
    categories = Counter(r.category for r in records if r.category)
    report["vocabulary_size"] = len(vocabulary)
    report["categories"] = dict(categories.most_common())
    report["examples"] = [{"filename": r.filename, "split": r.split, "captions": r.captions} for r in records[:examples]]
    report["text"] = _render(report)
    return report


def _stats(values):
    return {"min": min(values), "mean": round(mean(values), 2), "max": max(values)} if values else None


def _render(report) -> str:
    lines = [f"{report['path']}  ({report['format']})", f"{'split':<11}{'images':>8}{'captions':>10}"
             f"{'caps/img':>12}{'words/cap (min/mean/max)':>28}{'missing':>9}{'no caps':>9}"]
    for split, s in report["splits"].items():
        cpi = f"{s['captions_per_image']['mean']:.2f}" if s["captions_per_image"] else "-"
        words = "/".join(str(v) for v in s["caption_words"].values()) if s["caption_words"] else "-"
        lines.append(f"{split:<11}{s['images']:>8}{s['captions']:>10}{cpi:>12}{words:>28}"
                     f"{s['missing_images']:>9}{s['without_captions']:>9}")
    lines.append(f"vocabulary: {report['vocabulary_size']} words; categories: {len(report['categories'])}")
    for example in report["examples"]:
        lines.append(f"  {example['filename']} [{example['split']}]")
        lines.extend(f"    - {c}" for c in example["captions"])
    return "\n".join(lines)
