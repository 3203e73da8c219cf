"""Training: loss terms, collator, feature caching, resume, 2-process DDP, and the demo learning past baselines."""

import json
import math
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file

from modeling_rscapret import RSCapRetForConditionalGeneration, RSCapRetProcessor, rscapret_contrastive_loss
from training.caption_data import load_caption_dataset
from training.collator import IGNORE_INDEX, RSCapRetCollator
from training.features import add_vision_features
from training.synthetic import write_synthetic_dataset
from training.tiny_towers import build_tiny_clip, build_tiny_llama
from training.trainer import rscapret_loss_terms
from training.train import parse_recipe, run_training

PROJECT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
RECIPE = os.path.join(PROJECT, "recipes", "demo.yaml")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    synth = write_synthetic_dataset(root / "data", n_images=96, seed=1)
    data = load_caption_dataset("karpathy", synth / "karpathy")
    corpus = [c for refs in data["train"]["captions"] for c in refs]
    clip, llama = build_tiny_clip(root / "clip", corpus), build_tiny_llama(root / "llama", corpus)
    return {"root": root, "data_root": str(synth / "karpathy"), "data": data, "clip": clip, "llama": llama}


@pytest.fixture()
def model_and_processor(setup):
    torch.manual_seed(0)
    model = RSCapRetForConditionalGeneration.from_towers(setup["clip"], setup["llama"])
    return model, RSCapRetProcessor.from_towers(setup["clip"], setup["llama"])


def _recipe_overrides(setup, output_dir, *extra):
    return ["--vision_model_name_or_path", setup["clip"], "--text_model_name_or_path", setup["llama"],
            "--dataset_root", setup["data_root"], "--output_dir", str(output_dir),
            "--release_dir", str(output_dir / "model"), "--per_device_train_batch_size", "8",
            "--logging_steps", "1", "--eval_strategy", "no", *extra]


# ------------------------------------------------------------------------------------------------------ the loss
def test_infonce_matches_a_hand_computed_3x3_example():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.3], [1.5, -0.5, 0.8]])
    t2i, i2t = rscapret_contrastive_loss(logits)
    rows = [-math.log(math.exp(logits[i, i]) / sum(math.exp(v) for v in logits[i])) for i in range(3)]
    cols = [-math.log(math.exp(logits[i, i]) / sum(math.exp(logits[j, i]) for j in range(3))) for i in range(3)]
    assert t2i.item() == pytest.approx(sum(rows) / 3, abs=1e-6)
    assert i2t.item() == pytest.approx(sum(cols) / 3, abs=1e-6)
    with pytest.raises(ValueError, match="square"):
        rscapret_contrastive_loss(torch.zeros(2, 3))


def test_combined_loss_uses_the_config_weights_and_the_learnable_temperature(model_and_processor, setup):
    model, processor = model_and_processor
    model.config.caption_loss_weight, model.config.retrieval_loss_weight = 0.5, 2.0
    with torch.no_grad():
        model.logit_scale.fill_(math.log(20.0))
    examples = [setup["data"]["train"][i] for i in range(4)]
    batch = RSCapRetCollator(processor, train=False)(examples)
    terms = rscapret_loss_terms(model, batch)
    expected = 0.5 * (terms["loss_caption"] + terms["loss_ret_lm"]) + 2.0 * (terms["loss_t2i"] + terms["loss_i2t"])
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    logits = 20.0 * terms["text_embeds"] @ terms["image_embeds"].t()
    targets = torch.arange(4)
    assert terms["loss_t2i"].item() == pytest.approx(F.cross_entropy(logits, targets).item(), rel=1e-5)
    assert terms["loss_i2t"].item() == pytest.approx(F.cross_entropy(logits.t(), targets).item(), rel=1e-5)


# ---------------------------------------------------------------------------------------------------- collator
def test_collator_masks_labels_and_keeps_ret_last(setup, model_and_processor):
    _, processor = model_and_processor
    tok = processor.tokenizer
    examples = [{"captions": ["a lake in the center"], "image": setup["data"]["train"][0]["image"], "filename": "a"},
                {"captions": ["two cars are parked " * 30], "image": setup["data"]["train"][1]["image"], "filename": "b"}]
    batch = RSCapRetCollator(processor, max_length=24, concat_probability=0.0)(examples)
    ids, labels, mask = batch["input_ids"][0], batch["labels"][0], batch["attention_mask"][0]
    caption = tok("a lake in the center", add_special_tokens=False)["input_ids"]
    n = int(mask.sum())
    assert ids[:n].tolist() == [tok.bos_token_id, processor.image_token_id] + caption + [tok.eos_token_id]
    assert labels[:2].tolist() == [IGNORE_INDEX, IGNORE_INDEX]  # no loss on <s> and <image>
    assert labels[2:n].tolist() == caption + [tok.eos_token_id]
    assert (labels[n:] == IGNORE_INDEX).all() and (mask[n:] == 0).all()
    assert batch["input_ids"].shape[1] <= 24 and batch["caption_image_index"].tolist() == [0, 1]
    for row in range(2):  # retrieval rows: no image, [RET] last (also after truncation), labelled
        length = int(batch["ret_attention_mask"][row].sum())
        assert batch["ret_input_ids"][row, length - 1].item() == processor.ret_token_id
        assert batch["ret_labels"][row, length - 1].item() == processor.ret_token_id
        assert processor.image_token_id not in batch["ret_input_ids"][row].tolist()
    assert int(batch["ret_attention_mask"][1].sum()) == 24
    assert batch["pixel_values"].shape[0] == 2


def test_collator_concatenates_pairs_and_draws_captions_per_epoch(setup, model_and_processor):
    _, processor = model_and_processor
    examples = [setup["data"]["train"][i] for i in range(6)]
    collator = RSCapRetCollator(processor, max_length=64, concat_probability=1.0, seed=3)
    batch = collator(examples)
    assert (batch["input_ids"] == processor.image_token_id).sum(1).tolist() == [2] * 6
    index = batch["caption_image_index"].view(6, 2)
    assert index[:, 0].tolist() == list(range(6)) and (index[:, 1] != index[:, 0]).all()
    eos_positions = (batch["labels"][0] == processor.tokenizer.eos_token_id).nonzero().flatten().tolist()
    assert len(eos_positions) == 2 and batch["input_ids"][0, eos_positions[0] + 1] == processor.image_token_id
    assert torch.equal(collator(examples)["ret_input_ids"], batch["ret_input_ids"])  # same epoch: same draw
    draws = set()
    for epoch in range(6):
        collator.epoch = epoch
        draws.add(tuple(collator(examples)["ret_input_ids"][0].tolist()))
    assert len(draws) > 1, "a new caption should be drawn in other epochs"
    single = RSCapRetCollator(processor, concat_probability=0.0)(examples)
    assert (single["input_ids"] == processor.image_token_id).sum().item() == 6


# -------------------------------------------------------------------------------------------- feature caching
def test_cached_features_give_the_same_loss_and_are_read_from_the_arrow_cache(setup, model_and_processor):
    model, processor = model_and_processor
    train = setup["data"]["train"].select(range(8))
    cached = add_vision_features(train, model, processor, batch_size=4)
    collator = RSCapRetCollator(processor, seed=0)
    with torch.no_grad():
        from_pixels = rscapret_loss_terms(model, collator([train[i] for i in range(8)]))
        from_cache = rscapret_loss_terms(model, collator([
            {k: v for k, v in cached[i].items() if k != "image"} for i in range(8)]))
    for name in ("loss", "loss_caption", "loss_ret_lm", "loss_t2i", "loss_i2t"):
        assert from_cache[name].item() == pytest.approx(from_pixels[name].item(), rel=1e-5), name
    original = model.get_vision_features
    model.get_vision_features = lambda *a, **k: (_ for _ in ()).throw(AssertionError("tower ran again"))
    try:
        again = add_vision_features(train, model, processor, batch_size=4)  # from the Arrow cache
    finally:
        model.get_vision_features = original
    assert again["vision_features"] == cached["vision_features"]


# ------------------------------------------------------------------------------------------------------ resume
def test_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one(setup, monkeypatch):
    def run(output_dir, *extra):
        model_args, data_args, training_args = parse_recipe(RECIPE, _recipe_overrides(
            setup, output_dir, "--max_steps", "6", "--save_strategy", "steps", "--save_steps", "3", *extra))
        return run_training(model_args, data_args, training_args, data=setup["data"])

    root = setup["root"]
    straight = run(root / "straight")
    first = run(root / "first", "--max_steps", "3")
    assert sorted(os.listdir(root / "first"))[:1] == ["checkpoint-3"]
    checkpoint = load_file(root / "first" / "checkpoint-3" / "model.safetensors")
    assert set(checkpoint) == set(first.model.trainable_state_dict())  # checkpoints hold trainables only
    from training.trainer import RSCapRetTrainer
    calls = []
    original = RSCapRetTrainer.compute_loss
    monkeypatch.setattr(RSCapRetTrainer, "compute_loss", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    resumed = run(root / "resumed", "--resume_from_checkpoint", str(root / "first" / "checkpoint-3"))
    assert len(calls) == 3 and resumed.state.global_step == 6  # it went on from step 3, it did not start over
    a, b = straight.model.trainable_state_dict(), resumed.model.trainable_state_dict()
    init = RSCapRetForConditionalGeneration.from_towers(setup["clip"], setup["llama"]).trainable_state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
        assert not torch.equal(a[key], init[key]) or key.startswith("ret_input"), f"{key} never trained"
    release = RSCapRetForConditionalGeneration.from_pretrained(root / "straight" / "model")
    card = (root / "straight" / "model" / "README.md").read_text()  # every training release carries its card
    assert "6 steps" in card and "{{" not in card and (root / "straight" / "model" / "examples" / "metadata.jsonl").exists()
    assert torch.equal(release.trainable_state_dict()["logit_scale"], a["logit_scale"])
    history = json.loads((root / "straight" / "log_history.json").read_text())
    assert {"loss_caption", "loss_ret_lm", "loss_t2i", "loss_i2t", "temperature"} <= set(history[0])
    assert (root / "straight" / "loss_curve.png").stat().st_size > 5000


def test_training_without_feature_caching_runs_the_tower(setup, tmp_path):
    model_args, data_args, training_args = parse_recipe(RECIPE, _recipe_overrides(
        setup, tmp_path, "--max_steps", "2", "--cache_features", "false", "--save_strategy", "no"))
    trainer = run_training(model_args, data_args, training_args, data=setup["data"])
    assert "image" in trainer.train_dataset.column_names and "vision_features" not in trainer.train_dataset.column_names
    assert trainer.state.global_step == 2 and (tmp_path / "model" / "model.safetensors").exists()


def test_recipe_errors_name_the_recipe_and_the_key(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("learning_rate: 1.0e-4\nlearnig_rate: 3\n")
    with pytest.raises(ValueError, match=r"bad.yaml: unknown recipe keys \['learnig_rate'\]"):
        parse_recipe(str(recipe))
    model_args, data_args, training_args = parse_recipe(RECIPE, ["--learning_rate", "1e-4"])
    assert training_args.learning_rate == 1e-4 and data_args.cache_features and not training_args.remove_unused_columns


# ------------------------------------------------------------------------------------------------------- DDP
def test_two_process_ddp_over_gloo_ends_with_identical_weights_on_both_ranks(setup, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": PROJECT, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(port), os.path.join(PROJECT, "tests", "ddp_train.py"), str(tmp_path), RECIPE,
               *_recipe_overrides(setup, tmp_path / "run", "--max_steps", "3", "--ddp_find_unused_parameters", "false")]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [tmp_path / f"rank{r}.safetensors" for r in (0, 1)]
    for path in ranks:
        with safe_open(path, "pt") as f:
            assert f.metadata()["world_size"] == "2"
    rank0, rank1 = load_file(ranks[0]), load_file(ranks[1])
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), f"ranks differ in {key}"
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()


@pytest.mark.parametrize("name", ["paper.yaml", "finetune.yaml", "demo.yaml", "clip_cap4.yaml"])
def test_shipped_recipes_parse(name):
    import yaml
    from training.train_clip import parse_clip_recipe
    path = os.path.join(PROJECT, "recipes", name)
    values = yaml.safe_load(open(path))
    if name == "paper.yaml":  # the paper's recipe, as published
        assert (values["learning_rate"], values["warmup_steps"], values["per_device_train_batch_size"],
                values["bf16"]) == (3e-4, 100, 64, True)
        assert values["text_model_name_or_path"] == "meta-llama/Llama-2-7b-hf" and values["dataset"] == "cap4"
    if name == "finetune.yaml":
        assert values["learning_rate"] == 1e-4 and values["init_from"]
    # every key is a real argument (bf16 needs a GPU, absent here)
    parse = parse_clip_recipe if name.startswith("clip") else parse_recipe
    parsed = parse(path, ["--bf16", "false"] if values.get("bf16") else [])
    assert parsed[-1].learning_rate == pytest.approx(float(values["learning_rate"]))
