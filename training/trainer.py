"""`RSCapRetTrainer`: the 🤗 Trainer with RS-CapRet's combined loss.

    loss = λc · (CE_caption + CE_ret) + λr · (L_t2i + L_i2t)

CE_caption is the next-token loss of the captioning rows, CE_ret that of the retrieval rows (it teaches the model
to emit [RET] after a caption, as FROMAGe does); L_t2i and L_i2t are InfoNCE in both directions with the learnable
temperature. λc and λr come from the model's config. Each term is logged on its own.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from transformers import Trainer

from modeling_rscapret import rscapret_contrastive_loss

from .run_eval import retrieval_on_split

LOSS_TERMS = ("loss_caption", "loss_ret_lm", "loss_t2i", "loss_i2t")


def rscapret_loss_terms(model, batch: dict) -> dict:
    """Every loss term for one collated batch (see `training.collator`), plus the retrieval embeddings.

    `model` may be wrapped (DDP): only its forward is called through the wrapper.
    """
    core = getattr(model, "module", model)
    features = batch.get("vision_features")
    if features is None:
        with torch.no_grad():  # the tower is frozen
            features = core.get_vision_features(batch["pixel_values"])
    caption = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"],
                    vision_features=features[batch["caption_image_index"]])
    # No <image> in the retrieval rows: the images are embedded beside them, as CLIPModel takes texts and images.
    retrieval = model(input_ids=batch["ret_input_ids"], attention_mask=batch["ret_attention_mask"],
                      labels=batch["ret_labels"], vision_features=features)
    loss_t2i, loss_i2t = rscapret_contrastive_loss(retrieval.logits_per_text)
    config = core.config
    loss = config.caption_loss_weight * (caption.loss + retrieval.loss) + config.retrieval_loss_weight * (
        loss_t2i + loss_i2t)
    return {"loss": loss, "loss_caption": caption.loss, "loss_ret_lm": retrieval.loss, "loss_t2i": loss_t2i,
            "loss_i2t": loss_i2t, "text_embeds": retrieval.text_embeds, "image_embeds": retrieval.image_embeds}


class RSCapRetTrainer(Trainer):
    """Trainer for RS-CapRet. Pass `eval_data_collator` (a collator with `train=False`) for deterministic eval."""

    def __init__(self, *args, eval_data_collator=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.eval_data_collator = eval_data_collator
        self._term_sums: dict[str, torch.Tensor] = {}
        self._term_steps = 0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        terms = rscapret_loss_terms(model, inputs)
        if model.training:  # summed as tensors: no device sync per step, only at logging
            for name in LOSS_TERMS:
                value = terms[name].detach()
                self._term_sums[name] = self._term_sums[name] + value if name in self._term_sums else value
            self._term_steps += 1
        return (terms["loss"], terms) if return_outputs else terms["loss"]

    def log(self, logs: dict, *args, **kwargs) -> None:
        if self._term_steps and "loss" in logs:  # a training log: add each term's mean since the last one
            for name in LOSS_TERMS:
                logs[name] = round(self._term_sums[name].item() / self._term_steps, 4)
            logs["temperature"] = round(1.0 / self.accelerator.unwrap_model(self.model).logit_scale.exp().item(), 4)
            self._term_sums.clear()
            self._term_steps = 0
        super().log(logs, *args, **kwargs)

    def get_eval_dataloader(self, eval_dataset=None):
        if self.eval_data_collator is None:
            return super().get_eval_dataloader(eval_dataset)
        train_collator, self.data_collator = self.data_collator, self.eval_data_collator
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            self.data_collator = train_collator

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict:
        """Validation loss terms and text->image / image->text R@1/5/10 over the whole validation split."""
        dataloader = self.get_eval_dataloader(eval_dataset)
        model = self.model
        was_training = model.training
        model.eval()
        sums, batches, texts, images = defaultdict(float), 0, [], []
        with torch.no_grad():
            for batch in dataloader:
                terms = rscapret_loss_terms(model, self._prepare_inputs(batch))
                for name in ("loss", *LOSS_TERMS):
                    sums[name] += terms[name].item()
                batches += 1
                texts.append(self.accelerator.gather_for_metrics(terms["text_embeds"].float()))
                images.append(self.accelerator.gather_for_metrics(terms["image_embeds"].float()))
        model.train(was_training)
        metrics = {f"{metric_key_prefix}_{name}": value / max(batches, 1) for name, value in sums.items()}
        text_embeds, image_embeds = torch.cat(texts).cpu(), torch.cat(images).cpu()
        recall = retrieval_on_split(image_embeds, text_embeds, list(range(len(text_embeds))))
        for direction in ("t2i", "i2t"):
            for k, value in recall[direction].items():
                metrics[f"{metric_key_prefix}_{direction}_{k}"] = value
        metrics[f"{metric_key_prefix}_mR"] = recall["mR"]
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def _save(self, output_dir: str | None = None, state_dict=None):
        """Checkpoints hold only the trainable tensors (a light release): the towers never change."""
        output_dir = output_dir or self.args.output_dir
        model = self.accelerator.unwrap_model(self.model)
        config = model.config
        model.save_pretrained(output_dir, light=bool(config.vision_model_name_or_path and config.text_model_name_or_path))
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
