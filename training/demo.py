"""`rscapret demo --output-dir DIR`: the whole method, offline, on CPU, in a few minutes.

1. generate the aerial caption set (`training.synthetic`);
2. build tiny towers: a tiny LLaMA pre-trained on the training captions (standing in for LLaMA-2's pre-training)
   and a tiny CLIP trained contrastively on the training pairs (standing in for the CLIP-Cap-4 stage), both then
   frozen;
3. train RS-CapRet with `recipes/demo.yaml` (the same `run_training` as `rscapret train`);
4. evaluate on the test split, beside two baselines: image-blind captioning (the frozen LM with a zero visual
   prefix) and retrieval with the tiny CLIP used directly;
5. reload the release folder through `AutoModel` / `AutoProcessor` with `trust_remote_code=True`, caption test
   images and run text queries with it.

Writes DIR/model/ (release folder with its card and results.json), DIR/eval.json, DIR/samples.md, DIR/loss_curve.png (and DIR/data, DIR/towers,
DIR/run with the intermediate artefacts).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import Dataset
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    CLIPModel,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainingArguments,
)

from .caption_data import load_caption_dataset
from .hub import write_release_card
from .run_eval import embed_images, embed_texts, flatten_references, generate_captions, retrieval_on_split
from .metrics.coco_caption.coco_caption import coco_caption_scores
from .tiny_towers import TinyTowerSizes, build_tiny_clip, build_tiny_llama
from .train import parse_recipe, run_training
from .train_clip import ClipArguments, run_clip_training

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "demo.yaml"
CAPTION_KEYS = ("BLEU_1", "BLEU_2", "BLEU_3", "BLEU_4", "METEOR", "ROUGE_L", "CIDEr")


@dataclass
class DemoSettings:
    """Knobs of the stand-in towers; RS-CapRet's own training is set in recipes/demo.yaml."""

    n_images: int = 2000
    seed: int = 0
    sizes: TinyTowerSizes = None  # set in __post_init__
    lm_epochs: float = 4
    lm_learning_rate: float = 3e-3
    clip_epochs: float = 12
    clip_learning_rate: float = 2e-3
    samples: int = 8

    def __post_init__(self):
        self.sizes = self.sizes or TinyTowerSizes(image_size=64, patch_size=16, vision_hidden=64, vision_layers=2,
                                                  projection_dim=64, text_hidden=128, text_layers=2, text_heads=4,
                                                  vocab_size=400, max_positions=128)


def _quiet_args(output_dir, **kwargs) -> TrainingArguments:
    return TrainingArguments(output_dir=output_dir, report_to="none", save_strategy="no", use_cpu=True,
                             logging_steps=20, disable_tqdm=False, remove_unused_columns=False, **kwargs)


def caption_documents(references: list[list[str]], seed: int) -> list[list[str]]:
    """Pre-training documents: each image's captions in a shuffled order.

    Within a document the captions share class, count and colour, so the LM learns what LLaMA-2 learned from its
    corpus and RS-CapRet relies on: to condition on earlier context (and to go on after an EOS)."""
    import random

    rng = random.Random(seed)
    documents = []
    for captions in references:
        for _ in range(2):
            order = list(captions)
            rng.shuffle(order)
            documents.append(order)
    return documents


def pretrain_language_model(base_dir, references, out_dir, settings: DemoSettings) -> str:
    """Next-token training of the tiny LLaMA on caption documents (captions ended by EOS), then frozen."""
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    tokenizer.pad_token = tokenizer.unk_token
    model = AutoModelForCausalLM.from_pretrained(base_dir)

    def encode(batch):
        ids = []
        for document in batch["captions"]:
            pieces = tokenizer(document, add_special_tokens=False)["input_ids"]
            ids.append([tokenizer.bos_token_id] + [t for piece in pieces for t in piece + [tokenizer.eos_token_id]])
        return {"input_ids": ids}

    documents = Dataset.from_dict({"captions": caption_documents(references, settings.seed)})
    tokens = documents.map(encode, batched=True, remove_columns=["captions"])
    trainer = Trainer(model=model, train_dataset=tokens,
                      data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
                      args=_quiet_args(os.path.join(out_dir, "_run"), num_train_epochs=settings.lm_epochs,
                                       per_device_train_batch_size=32, learning_rate=settings.lm_learning_rate,
                                       warmup_steps=20, seed=settings.seed, lr_scheduler_type="cosine"))
    trainer.train()
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(out_dir)  # the tokenizer as shipped, without our pad
    return out_dir


def build_demo_towers(data, towers_dir: Path, settings: DemoSettings) -> tuple[str, str]:
    references = list(data["train"]["captions"])
    captions = [c for refs in references for c in refs]
    llama_base = build_tiny_llama(towers_dir / "llama-base", captions, settings.sizes, seed=settings.seed)
    llama = pretrain_language_model(llama_base, references, str(towers_dir / "llama"), settings)
    clip_base = build_tiny_clip(towers_dir / "clip-base", captions, settings.sizes, seed=settings.seed)
    clip = run_clip_training(
        ClipArguments(clip_model_name_or_path=clip_base, text_max_length=32, release_dir=str(towers_dir / "clip")),
        None,
        _quiet_args(str(towers_dir / "_clip_run"), num_train_epochs=settings.clip_epochs,
                    per_device_train_batch_size=64, learning_rate=settings.clip_learning_rate, warmup_steps=20,
                    seed=settings.seed, lr_scheduler_type="cosine"),
        data=data,
    )
    return clip, llama


@torch.no_grad()
def clip_retrieval(clip_dir, images, references) -> dict:
    """Baseline: the frozen tiny CLIP used directly for retrieval."""
    from transformers import CLIPImageProcessor

    clip = CLIPModel.from_pretrained(clip_dir).eval()
    tokenizer, image_processor = AutoTokenizer.from_pretrained(clip_dir), CLIPImageProcessor.from_pretrained(clip_dir)
    texts, text_to_image = flatten_references(references)
    image_embeds = clip.get_image_features(pixel_values=image_processor(images, return_tensors="pt")["pixel_values"])
    text_embeds = clip.get_text_features(**tokenizer(texts, padding=True, truncation=True, max_length=32,
                                                     return_tensors="pt"))
    image_embeds = getattr(image_embeds, "pooler_output", image_embeds)  # 5.x may return an output object
    text_embeds = getattr(text_embeds, "pooler_output", text_embeds)
    normalize = torch.nn.functional.normalize
    return retrieval_on_split(normalize(image_embeds.float(), dim=-1), normalize(text_embeds.float(), dim=-1),
                              text_to_image)


def run_demo(output_dir, settings: DemoSettings | None = None, recipe_overrides: list[str] | None = None) -> dict:
    settings = settings or DemoSettings()
    out = Path(output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()

    from .synthetic import write_synthetic_dataset

    print(f"[1/5] generating {settings.n_images} aerial scenes with captions", flush=True)
    write_synthetic_dataset(out / "data", n_images=settings.n_images, seed=settings.seed)
    data = load_caption_dataset("karpathy", out / "data" / "karpathy")

    print("[2/5] building the stand-in towers (tiny LLaMA pre-trained on captions, tiny CLIP tuned contrastively)",
          flush=True)
    clip_dir, llama_dir = build_demo_towers(data, out / "towers", settings)

    print("[3/5] training RS-CapRet (recipes/demo.yaml)", flush=True)
    model_args, data_args, training_args = parse_recipe(str(RECIPE), [
        "--vision_model_name_or_path", clip_dir, "--text_model_name_or_path", llama_dir,
        "--dataset_root", str(out / "data" / "karpathy"), "--output_dir", str(out / "run"),
        "--release_dir", str(out / "model"), "--seed", str(settings.seed), *(recipe_overrides or [])])
    trainer = run_training(model_args, data_args, training_args, data=data)
    model, processor = trainer.model.eval(), trainer.processing_class
    if (out / "run" / "loss_curve.png").exists():
        (out / "loss_curve.png").write_bytes((out / "run" / "loss_curve.png").read_bytes())

    print("[4/5] evaluating on the test split, beside the baselines", flush=True)
    test = data["test"]
    images, references = list(test["image"]), list(test["captions"])
    predictions = generate_captions(model, processor, images)
    blind = generate_captions(model, processor, images, image_blind=True)
    texts, text_to_image = flatten_references(references)
    retrieval = retrieval_on_split(embed_images(model, processor, images), embed_texts(model, processor, texts),
                                   text_to_image)
    report = {
        "captioning": coco_caption_scores(predictions, references),
        "retrieval": retrieval,
        "baselines": {
            "image_blind_captioning": coco_caption_scores(blind, references),
            "clip_retrieval": clip_retrieval(clip_dir, images, references),
            "chance_R@1": 100.0 / len(images),
        },
        "n_test_images": len(images),
    }

    # the release's results.json (rscapret eval's format) and its card with the model-index
    results = {"model": str(out / "model"), "dataset": "generated aerial caption set", "split": "test",
               "rows": {"generated-aerial": {"n_images": len(images), "captioning": report["captioning"],
                                             "retrieval": report["retrieval"]}}}
    (out / "model" / "results.json").write_text(json.dumps(results, indent=2))
    write_release_card(out / "model", model=model)

    print("[5/5] reloading the release with trust_remote_code and captioning / querying with it", flush=True)
    report["reloaded_samples"] = write_samples(out, test, settings.samples)
    report["minutes"] = round((time.time() - started) / 60, 2)
    (out / "eval.json").write_text(json.dumps(report, indent=2))
    print(summary(report))
    return report


def write_samples(out: Path, test, n: int) -> dict:
    """Caption test images and run text queries with the model reloaded from DIR/model as a user would."""
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(out / "model", trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(out / "model", trust_remote_code=True)
    step = max(1, len(test) // n)
    picked = test.select(range(0, len(test), step))[:n]
    captions = generate_captions(model, processor, picked["image"])
    gallery = embed_images(model, processor, list(test["image"]))
    queries = [refs[0] for refs in picked["captions"]]
    scores = embed_texts(model, processor, queries) @ gallery.t()
    top5 = [[test[int(i)]["filename"] for i in row.topk(5).indices] for row in scores]
    lines = ["# RS-CapRet demo: samples from the reloaded release", "", "## Captions", "",
             "| image | generated caption | a reference |", "|---|---|---|"]
    lines += [f"| {f} | {c} | {refs[0]} |" for f, c, refs in zip(picked["filename"], captions, picked["captions"])]
    lines += ["", "## Text queries (top-5 of the test split)", "", "| query | right image | top-5 |", "|---|---|---|"]
    lines += [f"| {q} | {f} | {', '.join(t)} |" for q, f, t in zip(queries, picked["filename"], top5)]
    (out / "samples.md").write_text("\n".join(lines) + "\n")
    return {"captions": dict(zip(picked["filename"], captions)), "queries": dict(zip(queries, top5))}


def summary(report: dict) -> str:
    cap, blind = report["captioning"], report["baselines"]["image_blind_captioning"]
    ret, clip = report["retrieval"], report["baselines"]["clip_retrieval"]
    return "\n".join([
        f"captioning  CIDEr {cap['CIDEr']:.3f} (image-blind {blind['CIDEr']:.3f}, x{cap['CIDEr'] / max(blind['CIDEr'], 1e-9):.1f})"
        f"  BLEU-4 {cap['BLEU_4']:.3f}  METEOR {cap['METEOR']:.3f}  ROUGE-L {cap['ROUGE_L']:.3f}",
        f"retrieval   t2i R@1 {ret['t2i']['R@1']:.2f}% (chance {report['baselines']['chance_R@1']:.2f}%,"
        f" x{ret['t2i']['R@1'] / report['baselines']['chance_R@1']:.1f}; tiny CLIP {clip['t2i']['R@1']:.2f}%)"
        f"  mR {ret['mR']:.2f} (tiny CLIP {clip['mR']:.2f})",
        f"finished in {report['minutes']} min",
    ])
