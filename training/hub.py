"""Release folders on the Hub: model cards rendered from `hub_cards/`, and `rscapret push`.

    rscapret push MODEL_DIR --repo-id ORG/NAME [--light] [--private] [--dry-run DIR]

A release folder holds the model (full or light), the processor, the three code files, `examples/` (a few images
with captions, used by the card's snippets), `results.json` when evaluated, `training_summary.json` and a
rendered `README.md`. `--dry-run DIR` writes exactly the folder that would be uploaded and uploads nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from huggingface_hub import DatasetCard, DatasetCardData, EvalResult, HfApi, ModelCard, ModelCardData, get_token

from hub_cards import DATASET_CARD_TEMPLATE, MODEL_CARD_TEMPLATE

EXAMPLES = "examples"
RESULTS_FILE = "results.json"
SUMMARY_FILE = "training_summary.json"
CAPTION_METRICS = {"BLEU_1": "bleu", "BLEU_2": "bleu", "BLEU_3": "bleu", "BLEU_4": "bleu", "METEOR": "meteor",
                   "ROUGE_L": "rouge", "CIDEr": "cider", "SPICE": "spice"}
TAGS = ["remote-sensing", "image-captioning", "image-text-retrieval", "rs-capret", "custom_code"]


# --------------------------------------------------------------------------------------------------- examples
def write_examples(folder, dataset, n: int = 6) -> Path:
    """A few images of a caption set, with their captions as an imagefolder `metadata.jsonl`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    step = max(1, len(dataset) // n)  # spread over the split (it is usually sorted by class)
    for i in range(0, min(len(dataset), step * n), step):
        item = dataset[i]
        name = f"{Path(item['filename']).stem}.png"
        item["image"].convert("RGB").save(folder / name)
        rows.append({"file_name": name, "captions": list(item["captions"])})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def _examples_info(folder: Path) -> tuple[str, str]:
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{folder}: metadata.jsonl lists no example images.")
    return rows[0]["file_name"], rows[0]["captions"][0]


# --------------------------------------------------------------------------------------------------- the card
def _hub_id(name) -> str | None:
    """A base-model id the Hub would accept (`org/name`), or None for local folders."""
    name = str(name or "")
    return name if name.count("/") == 1 and not os.path.exists(name) and not name.startswith((".", "/")) else None


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _eval_results(results: dict | None, model_name: str) -> list[EvalResult]:
    entries = []
    for source, row in (results or {}).get("rows", {}).items():
        dataset = dict(dataset_type=source, dataset_name=source, dataset_split=results.get("split", "test"))
        for key, value in row["captioning"].items():
            entries.append(EvalResult(task_type="image-to-text", task_name="Image captioning", metric_type=CAPTION_METRICS.get(key, key.lower()),
                                      metric_name=key, metric_value=float(value), **dataset))
        for direction, name in (("t2i", "text-to-image"), ("i2t", "image-to-text")):
            for k, value in row["retrieval"][direction].items():
                entries.append(EvalResult(task_type="text-to-image-retrieval" if direction == "t2i" else "image-to-text-retrieval",
                                          task_name=f"{name} retrieval", metric_type="recall",
                                          metric_name=f"{direction} {k}", metric_value=float(value), **dataset))
        entries.append(EvalResult(task_type="text-to-image-retrieval", task_name="retrieval", metric_type="mean_recall",
                                  metric_name="mR", metric_value=float(row["retrieval"]["mR"]), **dataset))
    return entries


def _training_text(summary: dict | None) -> str:
    if not summary:
        return "Training details were not recorded with this release."
    losses = ", ".join(f"{k} {v}" for k, v in summary.get("final_losses", {}).items())
    return (f"Trained with rs-capret's `RSCapRetTrainer` on **{summary['dataset']}** ({summary['train_images']} "
            f"training images, one random reference caption per image per epoch, pairs concatenated with "
            f"probability {summary['concat_probability']}): AdamW, learning rate {summary['learning_rate']}, "
            f"{summary['warmup_steps']} warm-up steps, batch {summary['batch_size']}, {summary['steps']} steps, "
            f"{summary['precision']}. Final training losses: {losses or 'not logged'}.")


def _evaluation_text(results: dict | None) -> str:
    if not results:
        return "Not evaluated yet: `rscapret eval MODEL --dataset NAME --root PATH` writes the tables and results.json."
    from .run_eval import results_table

    return (f"On the **{results['split']}** split, captions from greedy decoding, coco-caption metrics from "
            "pycocoevalcap (CIDEr is CIDEr-D), recall in %:\n\n" + results_table(results))


def render_model_card(model, release_dir, repo_id: str, results: dict | None = None, summary: dict | None = None,
                      license: str | None = None, light: bool = False) -> ModelCard:
    """The card of a release folder (its `examples/` must exist)."""
    config = model.config
    example_image, example_query = _examples_info(Path(release_dir) / EXAMPLES)
    text_base, vision_base = config.text_model_name_or_path or "", config.vision_model_name_or_path or ""
    license = license or ("llama2" if "llama-2" in text_base.lower() else "apache-2.0")
    name = repo_id.rsplit("/", 1)[-1] if _hub_id(repo_id) else "RS-CapRet"
    trainable = model.trainable_state_dict()
    light_bytes = sum(t.numel() * t.element_size() for t in trainable.values())
    card_data = ModelCardData(
        library_name="transformers", pipeline_tag="image-text-to-text", tags=TAGS, license=license,
        base_model=[b for b in (_hub_id(vision_base), _hub_id(text_base)) if b] or None,
        datasets=sorted((results or {}).get("rows", {})) or None, model_name=name,
        eval_results=_eval_results(results, name) or None,
    )
    n = lambda value: f"{value:,}"  # noqa: E731
    return ModelCard.from_template(
        card_data, template_path=str(MODEL_CARD_TEMPLATE), model_name=name, repo_id=repo_id,
        release_form="light" if light else "full", vision_base=vision_base, text_base=text_base,
        vision_params=n(_count(model.vision_tower)), text_params=n(_count(model.language_model)),
        num_visual_tokens=config.num_visual_tokens, retrieval_dim=config.retrieval_embed_dim,
        prefix_params=n(_count(model.visual_prefix_projection)),
        image_proj_params=n(_count(model.image_retrieval_projection)),
        text_proj_params=n(_count(model.text_retrieval_projection)),
        ret_params=n(model.ret_input_embedding.numel() + model.ret_output_embedding.numel() + 1),
        trainable_params=n(sum(t.numel() for t in trainable.values())), light_size=f"{light_bytes / 1e6:.1f} MB",
        vision_feature="CLIP pooler output" if config.vision_feature == "pooled" else "CLIP image_embeds",
        caption_weight=config.caption_loss_weight, retrieval_weight=config.retrieval_loss_weight,
        training_text=_training_text(summary), evaluation_text=_evaluation_text(results),
        example_image=example_image, example_query=example_query, example_prompt="what is in this image?",
        image_size=config.vision_config.image_size,
        extra_limitations="" if _hub_id(text_base) else
        "- The towers of this release are local folders, not Hub repos: a light copy only loads where they exist.",
    )


def write_release_card(release_dir, repo_id: str | None = None, license: str | None = None, model=None) -> Path:
    """(Re)render README.md of a release folder from its config, examples, results and training summary.

    Pass the in-memory `model` when there is one: otherwise the release is loaded from disk to describe it."""
    from modeling_rscapret import RSCapRetForConditionalGeneration

    release_dir = Path(release_dir).resolve()
    model = model if model is not None else RSCapRetForConditionalGeneration.from_pretrained(release_dir)
    card = render_model_card(model, release_dir, repo_id or str(release_dir), _read_json(release_dir / RESULTS_FILE),
                             _read_json(release_dir / SUMMARY_FILE), license, light=_is_light(release_dir))
    card.save(release_dir / "README.md")
    return release_dir / "README.md"


def _is_light(release_dir: Path) -> bool:
    return json.loads((release_dir / "config.json").read_text()).get("release_form") == "light"


def _read_json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


# --------------------------------------------------------------------------------------------- stage and push
def stage_release(model_dir, stage_dir, repo_id: str, light: bool = False, license: str | None = None) -> list[str]:
    """Write exactly what would be uploaded to `stage_dir` (which must not exist yet); returns its files."""
    from modeling_rscapret import RSCapRetForConditionalGeneration, RSCapRetProcessor

    model_dir, stage_dir = Path(model_dir), Path(stage_dir)
    if stage_dir.exists() and any(stage_dir.iterdir()):
        raise ValueError(f"{stage_dir}: the dry-run folder must be new or empty.")
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir}: not a release folder (no config.json).")
    if not (model_dir / EXAMPLES / "metadata.jsonl").is_file():
        raise ValueError(f"{model_dir}: a release needs {EXAMPLES}/ (images + metadata.jsonl) for its card's snippets; "
                         "training and the demo write it, or use training.hub.write_examples.")
    partial = Path(tempfile.mkdtemp(prefix=".staging-", dir=stage_dir.parent if stage_dir.parent.exists() else None))
    try:
        model = RSCapRetForConditionalGeneration.from_pretrained(model_dir)
        model.save_pretrained(partial, light=light)
        RSCapRetProcessor.from_pretrained(model_dir).save_pretrained(partial)
        shutil.copytree(model_dir / EXAMPLES, partial / EXAMPLES)
        for name in (RESULTS_FILE, SUMMARY_FILE):
            if (model_dir / name).is_file():
                shutil.copy(model_dir / name, partial / name)
        render_model_card(model, partial, repo_id, _read_json(model_dir / RESULTS_FILE),
                          _read_json(model_dir / SUMMARY_FILE), license, light).save(partial / "README.md")
        if stage_dir.exists():
            stage_dir.rmdir()
        os.replace(partial, stage_dir)  # the folder appears whole or not at all
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return sorted(str(p.relative_to(stage_dir)) for p in stage_dir.rglob("*") if p.is_file())


def push_release(model_dir, repo_id: str, light: bool = False, private: bool = False, dry_run=None,
                 license: str | None = None) -> str:
    if "/" not in repo_id:
        raise ValueError(f"--repo-id must be ORG/NAME, got {repo_id!r}.")
    if dry_run:
        files = stage_release(model_dir, dry_run, repo_id, light, license)
        return f"dry run: {len(files)} files in {dry_run}; nothing uploaded"
    token = get_token()  # HF_TOKEN or the saved login; never printed or written
    if not token:
        raise ValueError("no Hugging Face token: set HF_TOKEN or run `hf auth login`; nothing was created or uploaded.")
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory() as staging:
        stage = Path(staging) / "release"
        stage_release(model_dir, stage, repo_id, light, license)
        try:
            existed = api.repo_exists(repo_id)
            api.create_repo(repo_id, private=private, exist_ok=True)
        except Exception as error:  # offline, unauthorised, ...: the Hub's own message (it never holds the token)
            raise RuntimeError(f"push to {repo_id} failed before any upload: {type(error).__name__}: {error}") from None
        try:
            commit = api.upload_folder(folder_path=str(stage), repo_id=repo_id, commit_message="RS-CapRet release")
        except Exception as error:
            if not existed:  # leave nothing partial behind
                api.delete_repo(repo_id)
            raise RuntimeError(f"upload to {repo_id} failed; nothing was kept: {type(error).__name__}: {error}") from None
    return str(commit.commit_url)


# ------------------------------------------------------------------------------------------------ data-set card
def render_dataset_card(data, pretty_name: str, loader: str, root_hint: str, license: str = "other") -> DatasetCard:
    """A card for a caption set produced by `training.caption_data` (a DatasetDict of the common schema)."""
    rows, sources, categories = [], set(), set()
    for split, part in data.items():
        captions = list(part["captions"])
        words = [len(c.split()) for refs in captions for c in refs]
        rows.append(f"| {split} | {len(part)} | {len(words)} | {len(words) / max(len(part), 1):.2f} | "
                    f"{sum(words) / max(len(words), 1):.1f} |")
        sources.update(part["source"])
        categories.update(c for c in part["category"] if c)
    first = next(part for part in data.values() if len(part))[0]
    example = f"`{first['filename']}` ({first['source']}):\n\n" + "\n".join(f"- {c}" for c in first["captions"])
    card_data = DatasetCardData(pretty_name=pretty_name, license=license, task_categories=["image-to-text"],
                                tags=["remote-sensing", "image-captioning"], language=["en"])
    return DatasetCard.from_template(card_data, template_path=str(DATASET_CARD_TEMPLATE), pretty_name=pretty_name,
                                     split_rows="\n".join(rows), sources=", ".join(sorted(sources)),
                                     categories=", ".join(sorted(categories)) or "none", loader=loader,
                                     root_hint=root_hint, example=example)
