"""Train RS-CapRet from a recipe: `rscapret train RECIPE [--key value ...]` or, on several GPUs or nodes,
`accelerate launch -m training.train RECIPE [--key value ...]` (DDP; FSDP through an accelerate config).

A recipe is a YAML file of `ModelArguments`, `DataArguments` and `transformers.TrainingArguments` fields;
command-line flags override it. The final save is a release folder (see `ModelArguments.release_dir`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass, field

import torch
import yaml
from transformers import HfArgumentParser, TrainingArguments, set_seed

from modeling_rscapret import RSCapRetForConditionalGeneration, RSCapRetProcessor

from .caption_data import load_caption_dataset
from .collator import CollatorEpochCallback, RSCapRetCollator
from .features import add_vision_features
from .hub import write_examples, write_release_card
from .plots import plot_loss_curves
from .trainer import RSCapRetTrainer


@dataclass
class ModelArguments:
    vision_model_name_or_path: str = field(default="openai/clip-vit-large-patch14",
                                           metadata={"help": "CLIP (Hub id or folder), e.g. the CLIP-Cap-4 stage's output"})
    text_model_name_or_path: str = field(default="meta-llama/Llama-2-7b-hf", metadata={"help": "causal LM"})
    init_from: str | None = field(default=None, metadata={"help": "a trained RS-CapRet to fine-tune (release folder or Hub id)"})
    num_visual_tokens: int = 1
    vision_feature: str = field(default="pooled", metadata={"help": "'pooled' (FROMAGe) or 'projected'"})
    retrieval_embed_dim: int = 256
    caption_loss_weight: float = 1.0
    retrieval_loss_weight: float = 1.0
    tower_dtype: str | None = field(default=None, metadata={"help": "dtype of the frozen towers, e.g. bfloat16"})
    release_dir: str | None = field(default=None, metadata={"help": "where the final release goes (default OUTPUT_DIR/model)"})
    light_release: bool = field(default=False, metadata={"help": "release only the trainable tensors"})


@dataclass
class DataArguments:
    dataset: str = field(default="cap4", metadata={"help": "rsicd, ucm, sydney, nwpu, karpathy, imagefolder or cap4"})
    dataset_root: str = field(default="", metadata={"help": "folder; for cap4: 'rsicd=DIR,ucm=DIR,sydney=DIR,nwpu=DIR'"})
    max_length: int = 64
    concat_probability: float = 0.5
    cache_features: bool = field(default=True, metadata={"help": "compute CLIP features once (Arrow cache)"})
    feature_batch_size: int = 64
    max_train_samples: int | None = None
    max_eval_samples: int | None = None


def parse_recipe(recipe: str | None, overrides: list[str] | None = None, argument_types=None):
    """The argument dataclasses (default: Model-, Data-, TrainingArguments) from a YAML recipe and CLI overrides."""
    argument_types = argument_types or (ModelArguments, DataArguments, TrainingArguments)
    parser = HfArgumentParser(argument_types)
    values = {}
    if recipe:
        with open(recipe, encoding="utf-8") as f:
            values = yaml.safe_load(f) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{recipe}: a recipe is a YAML mapping of argument names to values.")
        known = {f.name for cls in argument_types for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            names = ", ".join(cls.__name__ for cls in argument_types)
            raise ValueError(f"{recipe}: unknown recipe keys {unknown} (fields of {names}).")
        parser.set_defaults(**{k: _as_cli_default(v) for k, v in values.items()})
    parsed = parser.parse_args_into_dataclasses(args=overrides or [])
    # The collators need the raw columns (image / captions / vision_features), which are not forward() arguments.
    parsed[-1].remove_unused_columns = False
    return parsed


def _as_cli_default(value):
    # argparse converts string defaults with each field's type; YAML already gives most types, lists pass as-is.
    return value if isinstance(value, (bool, list)) or value is None else str(value)


def build_model_and_processor(model_args: ModelArguments):
    dtype = getattr(torch, model_args.tower_dtype) if model_args.tower_dtype else None
    if model_args.init_from:
        model = RSCapRetForConditionalGeneration.from_pretrained(model_args.init_from, dtype=dtype)
        processor = RSCapRetProcessor.from_pretrained(model_args.init_from)
    else:
        model = RSCapRetForConditionalGeneration.from_towers(
            model_args.vision_model_name_or_path, model_args.text_model_name_or_path, dtype=dtype,
            num_visual_tokens=model_args.num_visual_tokens, vision_feature=model_args.vision_feature,
            retrieval_embed_dim=model_args.retrieval_embed_dim, caption_loss_weight=model_args.caption_loss_weight,
            retrieval_loss_weight=model_args.retrieval_loss_weight,
        )
        processor = RSCapRetProcessor.from_towers(model_args.vision_model_name_or_path,
                                                  model_args.text_model_name_or_path,
                                                  num_visual_tokens=model_args.num_visual_tokens)
    # Trainable tensors train in float32 even when the towers are bf16.
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()
    return model, processor


def load_training_data(data_args: DataArguments):
    root = data_args.dataset_root
    if data_args.dataset.lower().replace("-", "") == "cap4":
        root = dict(item.split("=", 1) for item in root.split(",") if item)
    data = load_caption_dataset(data_args.dataset, root)
    if data_args.max_train_samples:
        data["train"] = data["train"].select(range(min(data_args.max_train_samples, len(data["train"]))))
    if data_args.max_eval_samples:
        data["validation"] = data["validation"].select(range(min(data_args.max_eval_samples, len(data["validation"]))))
    return data


def run_training(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments,
                 model=None, processor=None, data=None) -> RSCapRetTrainer:
    """Train, then save the release folder; returns the trainer (its model is the trained model)."""
    set_seed(training_args.seed)
    if model is None:
        model, processor = build_model_and_processor(model_args)
    if data is None:
        data = load_training_data(data_args)
    examples_source = data["validation"] if len(data["validation"]) else data["train"]
    if data_args.cache_features:
        with training_args.main_process_first(desc="caching CLIP features"):
            data = add_vision_features(data, model, processor, batch_size=data_args.feature_batch_size)
        data = data.remove_columns("image")

    def collator(train: bool):
        return RSCapRetCollator(processor, max_length=data_args.max_length, train=train, seed=training_args.seed,
                                concat_probability=data_args.concat_probability)

    train_collator = collator(train=True)
    trainer = RSCapRetTrainer(
        model=model, args=training_args, train_dataset=data["train"],
        eval_dataset=data["validation"] if len(data["validation"]) else None,
        data_collator=train_collator, eval_data_collator=collator(train=False), processing_class=processor,
        callbacks=[CollatorEpochCallback(train_collator)],
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    if trainer.is_world_process_zero():
        release_dir = model_args.release_dir or os.path.join(training_args.output_dir, "model")
        trained = trainer.accelerator.unwrap_model(trainer.model)
        trained.save_pretrained(release_dir, light=model_args.light_release)
        processor.save_pretrained(release_dir)
        write_examples(os.path.join(release_dir, "examples"), examples_source)
        with open(os.path.join(release_dir, "training_summary.json"), "w") as f:
            json.dump(training_summary(trainer, data_args, len(data["train"])), f, indent=1)
        write_release_card(release_dir, model=trained)
        with open(os.path.join(training_args.output_dir, "log_history.json"), "w") as f:
            json.dump(trainer.state.log_history, f, indent=1)
        plot_loss_curves(trainer.state.log_history, os.path.join(training_args.output_dir, "loss_curve.png"))
    return trainer


def training_summary(trainer, data_args: DataArguments, train_images: int) -> dict:
    """What the model card says about training."""
    args = trainer.args
    last = next((e for e in reversed(trainer.state.log_history) if "loss_caption" in e), {})
    return {
        "dataset": data_args.dataset, "train_images": train_images, "steps": trainer.state.global_step,
        "epochs": args.num_train_epochs, "learning_rate": args.learning_rate, "warmup_steps": args.warmup_steps,
        "batch_size": args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps,
        "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
        "concat_probability": data_args.concat_probability,
        "final_losses": {k: last[k] for k in ("loss_caption", "loss_ret_lm", "loss_t2i", "loss_i2t") if k in last},
    }


def split_recipe_argv(argv: list[str] | None) -> tuple[str | None, list[str]]:
    """`RECIPE --key value ...` (the recipe is optional) from a command line."""
    argv = sys.argv[1:] if argv is None else argv
    return (argv[0], argv[1:]) if argv and not argv[0].startswith("--") else (None, list(argv))


def main(argv: list[str] | None = None) -> int:
    run_training(*parse_recipe(*split_recipe_argv(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
