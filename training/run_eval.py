"""Evaluate a trained RS-CapRet: `rscapret eval MODEL --dataset NAME --root PATH [--split test]`.

Captions every image of the split (batched `generate`, progress bar), scores them with the coco-caption module,
ranks the split's images for every reference caption (text->image) and every image's captions (image->text), and
writes `results.json` and `results.md` (one row per evaluated set, captioning as the paper's Table III, retrieval as
its Table IV). Cap-4 gives one row per source set.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .metrics.coco_caption.coco_caption import coco_caption_scores
from .metrics.retrieval_recall.retrieval_recall import retrieval_recall

CAPTION_COLUMNS = ("BLEU_1", "BLEU_2", "BLEU_3", "BLEU_4", "METEOR", "ROUGE_L", "CIDEr", "SPICE")


def _batches(items, size, desc):
    for start in tqdm(range(0, len(items), size), desc=desc, unit="batch", leave=False):
        yield items[start:start + size]


@torch.no_grad()
def generate_captions(model, processor, images, batch_size: int = 32, prompt: str = "", image_blind: bool = False,
                      max_new_tokens: int = 32, **generate_kwargs) -> list[str]:
    """One caption per image through `generate` with the KV cache. `image_blind` zeroes the visual prefix."""
    captions = []
    text = processor.caption_prompt(prompt)
    for chunk in _batches(list(images), batch_size, "captioning"):
        inputs = processor(images=chunk, text=[text] * len(chunk), return_tensors="pt", padding=True).to(model.device)
        kwargs = dict(max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=processor.tokenizer.pad_token_id)
        kwargs.update(generate_kwargs)
        if image_blind:
            embeds = model.embed_tokens(inputs["input_ids"])
            embeds[inputs["input_ids"] == processor.image_token_id] = 0.0
            new_tokens = model.generate(inputs_embeds=embeds, attention_mask=inputs["attention_mask"], **kwargs)
        else:
            new_tokens = model.generate(**inputs, **kwargs)[:, inputs["input_ids"].shape[1]:]
        captions += [c.strip() for c in processor.batch_decode(new_tokens, skip_special_tokens=True)]
    return captions


@torch.no_grad()
def embed_images(model, processor, images, batch_size: int = 64) -> torch.Tensor:
    """Retrieval-space embeddings of images (normalised), batched."""
    parts = [model.get_image_features(pixel_values=processor(images=chunk, return_tensors="pt")["pixel_values"]
                                      .to(model.device)).float().cpu()
             for chunk in _batches(list(images), batch_size, "embedding images")]
    return torch.cat(parts) if parts else torch.empty(0, model.config.retrieval_embed_dim)


@torch.no_grad()
def embed_texts(model, processor, texts, batch_size: int = 64) -> torch.Tensor:
    """Retrieval-space embeddings of text queries (`[RET]` is appended), batched."""
    parts = []
    for chunk in _batches(list(texts), batch_size, "embedding texts"):
        inputs = processor(text=[f"{t.strip()} {processor.ret_token}" for t in chunk], return_tensors="pt",
                           padding=True).to(model.device)
        parts.append(model.get_text_features(**inputs).float().cpu())
    return torch.cat(parts)


def retrieval_on_split(image_embeds: torch.Tensor, text_embeds: torch.Tensor, text_to_image: list[int]) -> dict:
    return retrieval_recall((image_embeds @ text_embeds.t()).numpy(), text_to_image)


def flatten_references(references: list[list[str]]) -> tuple[list[str], list[int]]:
    texts = [c for refs in references for c in refs]
    return texts, [i for i, refs in enumerate(references) for _ in refs]


def evaluate_split(model, processor, dataset, batch_size: int = 32, **generate_kwargs) -> dict:
    """Captioning and retrieval metrics of one split (a `datasets.Dataset` of the caption-data schema)."""
    images, references = list(dataset["image"]), list(dataset["captions"])
    predictions = generate_captions(model, processor, images, batch_size=batch_size, **generate_kwargs)
    texts, text_to_image = flatten_references(references)
    retrieval = retrieval_on_split(embed_images(model, processor, images, batch_size),
                                   embed_texts(model, processor, texts, batch_size), text_to_image)
    return {
        "n_images": len(images),
        "captioning": coco_caption_scores(predictions, references),
        "retrieval": retrieval,
        "predictions": {f: p for f, p in zip(dataset["filename"], predictions)},
    }


def evaluate_release(model_name_or_path, dataset: str, root, split: str = "test", out_dir: str | None = None,
                     batch_size: int = 32, **generate_kwargs) -> dict:
    """`rscapret eval`: evaluate a release folder (or Hub id) on a data set split; one row per source set."""
    from transformers import AutoModel, AutoProcessor

    from .train import DataArguments, load_training_data

    model = AutoModel.from_pretrained(model_name_or_path, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(model_name_or_path, trust_remote_code=True)
    data = load_training_data(DataArguments(dataset=dataset, dataset_root=root))
    if split not in data:
        raise ValueError(f"rscapret eval: split {split!r} not in {list(data)}.")
    part = data[split]
    sources = sorted(set(part["source"]))
    rows = {}
    for source in sources:
        subset = part.filter(lambda s: s == source, input_columns="source") if len(sources) > 1 else part
        rows[source] = evaluate_split(model, processor, subset, batch_size=batch_size, **generate_kwargs)
    results = {"model": str(model_name_or_path), "dataset": dataset, "split": split, "rows": rows}
    if out_dir:
        write_results(results, out_dir)
    return results


def write_results(results: dict, out_dir) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "results.json", out_dir / "results.md"
    json_path.write_text(json.dumps(results, indent=2))
    md_path.write_text(results_table(results))
    return json_path, md_path


def results_table(results: dict) -> str:
    """Markdown tables in the paper's layout: captioning (Table III) and text->image retrieval (Table IV)."""
    rows = results["rows"]
    columns = [c for c in CAPTION_COLUMNS if any(c in r["captioning"] for r in rows.values())]
    names = {"BLEU_1": "BLEU-1", "BLEU_2": "BLEU-2", "BLEU_3": "BLEU-3", "BLEU_4": "BLEU-4", "ROUGE_L": "ROUGE-L"}
    lines = [f"### Captioning ({results['split']} split)", "",
             "| Dataset | " + " | ".join(names.get(c, c) for c in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for source, row in rows.items():
        lines.append(f"| {source} | " + " | ".join(f"{row['captioning'][c]:.4f}" for c in columns) + " |")
    lines += ["", f"### Retrieval ({results['split']} split, recall in %)", "",
              "| Dataset | t2i R@1 | t2i R@5 | t2i R@10 | i2t R@1 | i2t R@5 | i2t R@10 | mR |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for source, row in rows.items():
        r = row["retrieval"]
        values = [r["t2i"][k] for k in ("R@1", "R@5", "R@10")] + [r["i2t"][k] for k in ("R@1", "R@5", "R@10")] + [r["mR"]]
        lines.append(f"| {source} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    return "\n".join(lines) + "\n"


def default_out_dir(model_name_or_path) -> str:
    return os.path.join(str(model_name_or_path) if os.path.isdir(str(model_name_or_path)) else ".", "eval")
