"""Batches for RS-CapRet's two objectives, as FROMAGe (the code the paper builds on) forms them.

For a batch of B images, each with one reference caption drawn at random (so a new one each epoch):

- captioning rows `<s> <image> caption </s>`, with labels only on the caption and `</s>`; with probability
  `concat_probability` a row is joined with another image/caption pair of the batch,
  `<s> <image> caption_i </s> <image> caption_j </s>` (the paper's trick for interleaved input);
- retrieval rows `<s> caption [RET]` (no image), labelled on the caption and `[RET]` so the model learns to emit
  `[RET]`; the hidden state at `[RET]` meets the image in the contrastive loss. Truncation keeps `[RET]` last.

The B images travel once, as `pixel_values` or cached `vision_features` aligned with the retrieval rows;
`caption_image_index` says which of them fill the captioning rows' `<image>` groups, in order.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

import torch
from transformers import TrainerCallback

IGNORE_INDEX = -100


@dataclass
class RSCapRetCollator:
    processor: object  # RSCapRetProcessor
    max_length: int = 64
    concat_probability: float = 0.5
    train: bool = True  # eval: first caption, no concatenation
    seed: int = 0
    epoch: int = 0  # set by CollatorEpochCallback: a new caption draw every epoch

    def __post_init__(self):
        tokenizer = self.processor.tokenizer
        self.bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        self.eos = tokenizer.eos_token_id
        self.image_ids = [self.processor.image_token_id] * self.processor.num_visual_tokens
        if self.max_length < len(self.bos) + len(self.image_ids) + 2:
            raise ValueError(f"RSCapRetCollator: max_length={self.max_length} leaves no room for a caption.")

    def __call__(self, examples: list[dict]) -> dict:
        # The draws depend only on (seed, epoch, which examples): a resumed run, or a prefetching loader, draws
        # exactly what an uninterrupted run draws.
        identity = f"{self.seed}|{self.epoch}|" + "|".join(str(e.get("filename", i)) for i, e in enumerate(examples))
        self.rng = random.Random(int.from_bytes(hashlib.sha256(identity.encode()).digest()[:8], "little"))
        captions = [self._pick_caption(example, i) for i, example in enumerate(examples)]
        tokens = self.processor.tokenizer(captions, add_special_tokens=False)["input_ids"]
        caption_rows, caption_images = [], []
        for i in range(len(examples)):
            parts = [i]
            if self.train and len(examples) > 1 and self.rng.random() < self.concat_probability:
                parts.append(self.rng.choice([j for j in range(len(examples)) if j != i]))
            caption_rows.append(self._caption_row([tokens[j] for j in parts]))
            caption_images.extend(parts)
        retrieval_rows = [self._retrieval_row(t) for t in tokens]

        batch = self._pad(caption_rows, prefix="")
        batch.update(self._pad(retrieval_rows, prefix="ret_"))
        batch["caption_image_index"] = torch.tensor(caption_images, dtype=torch.long)
        if "vision_features" in examples[0]:
            batch["vision_features"] = torch.tensor([e["vision_features"] for e in examples], dtype=torch.float32)
        elif "image" in examples[0]:
            batch["pixel_values"] = self.processor.image_processor(
                [e["image"] for e in examples], return_tensors="pt")["pixel_values"]
        else:
            raise ValueError("RSCapRetCollator: each example needs an 'image' or cached 'vision_features'.")
        return batch

    def _pick_caption(self, example, index) -> str:
        captions = example.get("captions")
        if not captions:
            raise ValueError(f"RSCapRetCollator: example {index} ({example.get('filename', '?')}) has no captions.")
        return captions[self.rng.randrange(len(captions))] if self.train else captions[0]

    def _caption_row(self, caption_tokens: list[list[int]]):
        # each pair gets an equal share of the room left after <s>
        room = (self.max_length - len(self.bos)) // len(caption_tokens) - len(self.image_ids) - 1
        ids, labels = list(self.bos), [IGNORE_INDEX] * len(self.bos)
        for tokens in caption_tokens:
            text = tokens[:room] + [self.eos]
            ids += self.image_ids + text
            labels += [IGNORE_INDEX] * len(self.image_ids) + text
        return ids, labels

    def _retrieval_row(self, tokens: list[int]):
        text = tokens[: self.max_length - len(self.bos) - 1] + [self.processor.ret_token_id]
        return self.bos + text, [IGNORE_INDEX] * len(self.bos) + text

    def _pad(self, rows, prefix: str) -> dict:
        """Right padding (training); the LM's positions start at 0 on every row."""
        length = max(len(ids) for ids, _ in rows)
        pad = self.processor.tokenizer.pad_token_id
        input_ids = torch.full((len(rows), length), pad, dtype=torch.long)
        labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        for row, (ids, row_labels) in enumerate(rows):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            labels[row, : len(ids)] = torch.tensor(row_labels)
            attention_mask[row, : len(ids)] = 1
        return {f"{prefix}input_ids": input_ids, f"{prefix}attention_mask": attention_mask, f"{prefix}labels": labels}


class CollatorEpochCallback(TrainerCallback):
    """Tells the collator which epoch it is collating, so each epoch draws a fresh caption per image."""

    def __init__(self, collator: RSCapRetCollator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.collator.epoch = int(state.epoch or 0)
