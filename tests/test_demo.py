"""The demo learns (past measured baselines), and `rscapret eval` on its model agrees with the metric modules."""

import json
import os

import evaluate
import pytest

from training.cli import main as cli

METRICS_DIR = os.path.join(os.path.dirname(__file__), "..", "training", "metrics")


def test_demo_learns_past_image_blind_captioning_and_chance_retrieval(demo_run):
    out, report = demo_run
    saved = json.loads((out / "eval.json").read_text())
    captioning, blind = saved["captioning"], saved["baselines"]["image_blind_captioning"]
    retrieval, chance = saved["retrieval"], saved["baselines"]["chance_R@1"]
    assert set(captioning) == {"BLEU_1", "BLEU_2", "BLEU_3", "BLEU_4", "METEOR", "ROUGE_L", "CIDEr"} == set(blind)
    assert set(retrieval) == {"t2i", "i2t", "mR"} == set(saved["baselines"]["clip_retrieval"])
    print(f"\ndemo (720 images): CIDEr {captioning['CIDEr']:.3f} vs image-blind {blind['CIDEr']:.3f}; "
          f"t2i R@1 {retrieval['t2i']['R@1']:.2f}% vs chance {chance:.2f}%")
    assert captioning["CIDEr"] >= 3 * blind["CIDEr"]
    assert captioning["BLEU_4"] > blind["BLEU_4"] and captioning["METEOR"] > blind["METEOR"]
    assert retrieval["t2i"]["R@1"] >= 10 * chance
    assert retrieval["i2t"]["R@1"] >= 3 * chance
    # the CLIP-Cap-4 stand-in itself learned (its retrieval is the RS-CapRet image side's upper reference)
    assert saved["baselines"]["clip_retrieval"]["t2i"]["R@1"] >= 5 * chance
    assert saved["minutes"] < 10


def test_demo_writes_release_samples_and_loss_curve(demo_run):
    out, report = demo_run
    assert {"config.json", "model.safetensors", "modeling_rscapret.py", "processor_config.json"} <= set(
        os.listdir(out / "model"))
    samples = (out / "samples.md").read_text()
    for filename, caption in report["reloaded_samples"]["captions"].items():
        assert f"| {filename} | {caption} |" in samples and caption.strip()
    assert all(len(top) == 5 for top in report["reloaded_samples"]["queries"].values())
    assert (out / "loss_curve.png").stat().st_size > 5000


def test_rscapret_eval_writes_results_and_agrees_with_the_metric_modules(demo_run, tmp_path, capsys):
    out, report = demo_run
    assert cli(["eval", str(out / "model"), "--dataset", "karpathy", "--root", str(out / "data" / "karpathy"),
                "--out", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    results = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "results.md").read_text() in table
    row = results["rows"]["karpathy"]
    assert row["n_images"] == report["n_test_images"]
    assert "| BLEU-1 | BLEU-2 | BLEU-3 | BLEU-4 | METEOR | ROUGE-L | CIDEr |" in table
    assert f"| karpathy | {row['captioning']['BLEU_1']:.4f} |" in table
    # the same captions scored by the evaluate module give the same numbers
    from training.caption_data import load_caption_dataset
    test = load_caption_dataset("karpathy", out / "data" / "karpathy")["test"]
    references = dict(zip(test["filename"], test["captions"]))
    names = sorted(row["predictions"])
    module = evaluate.load(os.path.join(METRICS_DIR, "coco_caption")).compute(
        predictions=[row["predictions"][n] for n in names], references=[references[n] for n in names])
    for key, value in module.items():
        assert row["captioning"][key] == pytest.approx(value, abs=1e-9)
    # the release reloaded by `rscapret eval` (remote code) reproduces the demo's in-process numbers
    assert row["captioning"]["CIDEr"] == pytest.approx(report["captioning"]["CIDEr"], abs=1e-9)
    assert row["retrieval"]["t2i"]["R@1"] == pytest.approx(report["retrieval"]["t2i"]["R@1"], abs=1e-9)
