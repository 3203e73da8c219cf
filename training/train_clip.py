"""The CLIP-Cap-4 stage: contrastive fine-tuning of a CLIP model on caption sets, before RS-CapRet freezes it.

    rscapret train-clip RECIPE [--key value ...]

`CLIPModel` computes its own symmetric InfoNCE loss (`return_loss=True`); the Trainer does the rest. The output is
an ordinary CLIP folder (weights, image processor, tokenizer) that `RSCapRetForConditionalGeneration.from_towers`
takes as its vision tower.
"""

from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass, field

from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel, Trainer, TrainingArguments, set_seed

from .train import DataArguments, load_training_data, parse_recipe, split_recipe_argv


@dataclass
class ClipArguments:
    clip_model_name_or_path: str = field(default="openai/clip-vit-large-patch14")
    text_max_length: int = 77
    release_dir: str | None = field(default=None, metadata={"help": "where the tuned CLIP goes (default OUTPUT_DIR/clip)"})


@dataclass
class ClipCollator:
    """One random caption per image, tokenized for CLIP's text tower, with the images' pixel values."""

    tokenizer: object
    image_processor: object
    max_length: int = 77
    seed: int | None = None

    def __post_init__(self):
        self.rng = random.Random(self.seed)

    def __call__(self, examples):
        captions = [e["captions"][self.rng.randrange(len(e["captions"]))] for e in examples]
        batch = dict(self.tokenizer(captions, padding=True, truncation=True, max_length=self.max_length,
                                    return_tensors="pt"))
        batch["pixel_values"] = self.image_processor([e["image"] for e in examples], return_tensors="pt")["pixel_values"]
        batch["return_loss"] = True
        return batch


def parse_clip_recipe(recipe: str | None, overrides: list[str] | None = None):
    return parse_recipe(recipe, overrides, (ClipArguments, DataArguments, TrainingArguments))


def run_clip_training(clip_args: ClipArguments, data_args: DataArguments, training_args: TrainingArguments,
                      data=None) -> str:
    """Fine-tune CLIP contrastively; returns the folder of the tuned CLIP."""
    set_seed(training_args.seed)
    model = CLIPModel.from_pretrained(clip_args.clip_model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(clip_args.clip_model_name_or_path)
    image_processor = CLIPImageProcessor.from_pretrained(clip_args.clip_model_name_or_path)
    data = data if data is not None else load_training_data(data_args)
    trainer = Trainer(
        model=model, args=training_args, train_dataset=data["train"],
        data_collator=ClipCollator(tokenizer, image_processor, clip_args.text_max_length, training_args.seed),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    release_dir = clip_args.release_dir or os.path.join(training_args.output_dir, "clip")
    if trainer.is_world_process_zero():
        trainer.accelerator.unwrap_model(trainer.model).save_pretrained(release_dir)
        image_processor.save_pretrained(release_dir)
        tokenizer.save_pretrained(release_dir)
    return release_dir


def main(argv: list[str] | None = None) -> int:
    run_clip_training(*parse_clip_recipe(*split_recipe_argv(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
