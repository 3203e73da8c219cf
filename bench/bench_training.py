"""Training benchmarks; every number is a ratio of timings taken in this run.

(a) RSCapRetTrainer steps/s / a plain PyTorch loop's steps/s: same model, same data loader and collator, same
    AdamW and gradient clipping (target >= 0.95: the Trainer should add next to nothing);
(b) steps/s with cached CLIP features / steps/s running the frozen tower every step, beside the ideal ratio
    (tower + rest) / rest from timing the vision tower and a cached-feature step separately.

    python bench/bench_training.py [--steps 40]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from torch.utils.data import DataLoader
from transformers import TrainerCallback, TrainingArguments

from modeling_rscapret import RSCapRetForConditionalGeneration, RSCapRetProcessor
from training.caption_data import load_caption_dataset
from training.collator import RSCapRetCollator
from training.features import add_vision_features
from training.synthetic import write_synthetic_dataset
from training.tiny_towers import TinyTowerSizes, build_tiny_clip, build_tiny_llama
from training.trainer import RSCapRetTrainer, rscapret_loss_terms

WARMUP = 5


class StepClock(TrainerCallback):
    """Time from the start of step WARMUP to the end of training."""

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == WARMUP:
            self.start = time.perf_counter()

    def on_train_end(self, args, state, control, **kwargs):
        self.seconds = time.perf_counter() - self.start


def setup(root: str, n_images: int):
    data_dir = write_synthetic_dataset(f"{root}/data", n_images=n_images, seed=0, image_size=224)
    data = load_caption_dataset("karpathy", data_dir / "karpathy")
    corpus = [c for refs in data["train"]["captions"] for c in refs]
    sizes = TinyTowerSizes(image_size=224, patch_size=16, vision_hidden=192, vision_layers=4, projection_dim=128,
                           text_hidden=256, text_layers=4, text_heads=8, vocab_size=600, max_positions=128)
    clip, llama = build_tiny_clip(f"{root}/clip", corpus, sizes), build_tiny_llama(f"{root}/llama", corpus, sizes)
    return data["train"], clip, llama


def fresh_model(clip, llama):
    torch.manual_seed(0)
    return RSCapRetForConditionalGeneration.from_towers(clip, llama).train()


def plain_loop(model, dataset, collator, steps: int, batch_size: int) -> float:
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, collate_fn=collator, drop_last=True,
                        generator=torch.Generator().manual_seed(0))
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=1e-3)
    done, start = 0, None
    while done < steps:
        for batch in loader:
            if done == WARMUP:
                start = time.perf_counter()
            loss = rscapret_loss_terms(model, batch)["loss"]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            done += 1
            if done == steps:
                break
    return (steps - WARMUP) / (time.perf_counter() - start)


def trainer_loop(model, dataset, collator, steps: int, batch_size: int, output_dir: str) -> float:
    clock = StepClock()
    args = TrainingArguments(output_dir=output_dir, max_steps=steps, per_device_train_batch_size=batch_size,
                             learning_rate=1e-3, lr_scheduler_type="constant", max_grad_norm=1.0, logging_steps=10,
                             save_strategy="no", report_to="none", use_cpu=True, remove_unused_columns=False,
                             dataloader_drop_last=True, disable_tqdm=True, seed=0)
    RSCapRetTrainer(model=model, args=args, train_dataset=dataset, data_collator=collator,
                    callbacks=[clock]).train()
    return (steps - WARMUP) / clock.seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n-images", type=int, default=480)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    with tempfile.TemporaryDirectory() as root:
        train, clip, llama = setup(root, args.n_images)
        processor = RSCapRetProcessor.from_towers(clip, llama)
        cached = add_vision_features(train, fresh_model(clip, llama), processor).remove_columns("image")
        collator = RSCapRetCollator(processor, max_length=40, seed=0)

        # (a) the same cached-feature training, by the Trainer and by hand (interleaved twice; best of each)
        trainer_rates, plain_rates = [], []
        for _ in range(2):
            trainer_rates.append(trainer_loop(fresh_model(clip, llama), cached, collator, args.steps, args.batch_size,
                                              f"{root}/run"))
            plain_rates.append(plain_loop(fresh_model(clip, llama), cached, collator, args.steps, args.batch_size))
        trainer_rate, plain_rate = max(trainer_rates), max(plain_rates)
        print(f"(a) Trainer {trainer_rate:.2f} steps/s, plain PyTorch loop {plain_rate:.2f} steps/s "
              f"-> ratio {trainer_rate / plain_rate:.3f} (target >= 0.95)")

        # (b) cached features vs the tower every step (plain loop, so only the data path differs)
        uncached_rate = plain_loop(fresh_model(clip, llama), train, collator, args.steps, args.batch_size)
        model = fresh_model(clip, llama)
        pixel_batch = collator([train[i] for i in range(args.batch_size)])
        feature_batch = collator([cached[i] for i in range(args.batch_size)])
        with torch.no_grad():
            model.get_vision_features(pixel_batch["pixel_values"])
            start = time.perf_counter()
            for _ in range(5):
                model.get_vision_features(pixel_batch["pixel_values"])
            tower = (time.perf_counter() - start) / 5
        start = time.perf_counter()
        for _ in range(5):
            rscapret_loss_terms(model, feature_batch)["loss"].backward()
        rest = (time.perf_counter() - start) / 5
        print(f"(b) cached features {plain_rate:.2f} steps/s, tower every step {uncached_rate:.2f} steps/s -> "
              f"speed-up {plain_rate / uncached_rate:.2f}x; ideal (tower {tower * 1e3:.0f} ms + rest {rest * 1e3:.0f} ms)"
              f" / rest = {(tower + rest) / rest:.2f}x")


if __name__ == "__main__":
    main()
