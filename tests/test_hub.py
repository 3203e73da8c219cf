"""Hub release: the rendered card, its snippets run as written, dry-run folders, push without a token."""

import json
import os
import re
import shutil

import pytest
from huggingface_hub import DatasetCard, ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results

from training.cli import main as cli
from training.hub import push_release, render_dataset_card

REPO_ID = "rs-capret-org/rs-capret-demo"
CODE_FILES = {"configuration_rscapret.py", "modeling_rscapret.py", "processing_rscapret.py"}
PROCESSOR_FILES = {"processor_config.json", "chat_template.jinja", "tokenizer.json", "tokenizer_config.json"}


@pytest.fixture(scope="module")
def dry_runs(demo_run, tmp_path_factory):
    out, _ = demo_run
    root = tmp_path_factory.mktemp("dry")
    for form in ("full", "light"):
        args = ["push", str(out / "model"), "--repo-id", REPO_ID, "--dry-run", str(root / form)]
        assert cli(args + (["--light"] if form == "light" else [])) == 0
    return root


def _files(folder):
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_dry_run_folders_hold_exactly_the_release_and_load_back(dry_runs, demo_run):
    out, _ = demo_run
    examples = {f"examples/{p.name}" for p in (out / "model" / "examples").iterdir()}
    assert len(examples) == 7 and "examples/metadata.jsonl" in examples
    expected = CODE_FILES | PROCESSOR_FILES | examples | {
        "README.md", "config.json", "generation_config.json", "model.safetensors", "results.json",
        "training_summary.json"}
    from transformers import AutoModel, AutoProcessor
    for form in ("full", "light"):
        folder = dry_runs / form
        assert _files(folder) == expected, _files(folder) ^ expected
        config = json.loads((folder / "config.json").read_text())
        assert config["release_form"] == form and "AutoModelForImageTextToText" in config["auto_map"]
        model = AutoModel.from_pretrained(folder, trust_remote_code=True)
        processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
        assert type(model).__name__ == "RSCapRetForConditionalGeneration" and processor.ret_token == "[RET]"
        assert model.config.release_form == form
    full_size = (dry_runs / "full" / "model.safetensors").stat().st_size
    assert (dry_runs / "light" / "model.safetensors").stat().st_size < full_size / 10


def test_card_parses_with_model_index_from_results_and_no_placeholder(dry_runs):
    card = ModelCard.load(dry_runs / "full" / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "image-text-to-text"
    assert {"remote-sensing", "image-captioning", "image-text-retrieval"} <= set(data["tags"])
    assert data["license"] == "apache-2.0"
    results = json.loads((dry_runs / "full" / "results.json").read_text())["rows"]["generated-aerial"]
    name, eval_results = model_index_to_eval_results(data["model-index"])
    values = {r.metric_name: r.metric_value for r in eval_results}
    for key, value in results["captioning"].items():
        assert values[key] == pytest.approx(value)
    assert values["t2i R@1"] == pytest.approx(results["retrieval"]["t2i"]["R@1"])
    assert values["mR"] == pytest.approx(results["retrieval"]["mR"])
    text = card.text
    for marker in ("{{", "}}", "ORG/NAME", "<org>", "TODO", "None"):
        assert marker not in text, marker
    for section in ("## Architecture", "## Training", "## Evaluation", "## Usage", "## Limitations",
                    "### Light and full releases", "### Fine-tuning on a new caption set with `Trainer`"):
        assert section in text
    assert "| generated-aerial |" in text and "Trained with rs-capret's `RSCapRetTrainer`" in text


def test_every_python_snippet_in_the_card_runs_as_written(dry_runs, tmp_path, monkeypatch, capsys):
    card = (dry_runs / "full" / "README.md").read_text()
    snippets = re.findall(r"```python\n(.*?)```", card, flags=re.S)
    assert len(snippets) == 5
    monkeypatch.chdir(tmp_path)
    for snippet in snippets:
        assert REPO_ID in snippet
        code = snippet.replace(REPO_ID, str(dry_runs / "full"))  # the only change: the Hub id -> the local folder
        exec(compile(code, "card-snippet", "exec"), {"__name__": "__main__"})
    printed = capsys.readouterr().out
    assert "retrieval query vector" not in printed or "torch.Size" in printed
    assert (tmp_path / "rscapret-finetuned" / "release" / "model.safetensors").exists()
    assert (tmp_path / "my-light-copy" / "config.json").exists()


def test_push_without_a_token_fails_clearly_and_leaves_nothing(demo_run, tmp_path, monkeypatch):
    out, _ = demo_run
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no saved login either
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    with pytest.raises(ValueError, match="no Hugging Face token.*nothing was created or uploaded"):
        push_release(out / "model", REPO_ID)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_token_is_never_printed_and_offline_push_leaves_nothing(demo_run, tmp_path, monkeypatch, capsys):
    out, _ = demo_run
    secret = "hf_" + "x" * 34
    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    code = cli(["push", str(out / "model"), "--repo-id", REPO_ID])  # offline: the Hub cannot be reached
    captured = capsys.readouterr()
    assert code == 2 and "failed before any upload" in captured.err
    assert secret not in captured.out + captured.err
    assert list((tmp_path / "tmp").iterdir()) == []
    before = set(os.listdir(out / "model"))
    assert set(os.listdir(out / "model")) == before and "README.md" in before


def test_dry_run_refuses_a_non_empty_folder_and_a_folder_without_examples(demo_run, tmp_path):
    out, _ = demo_run
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("keep me")
    with pytest.raises(ValueError, match="must be new or empty"):
        push_release(out / "model", REPO_ID, dry_run=tmp_path / "busy")
    assert (tmp_path / "busy" / "x").read_text() == "keep me"
    bare = tmp_path / "bare"
    shutil.copytree(out / "model", bare, ignore=shutil.ignore_patterns("examples"))
    with pytest.raises(ValueError, match="needs examples/"):
        push_release(bare, REPO_ID, dry_run=tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_dataset_card_renders_and_parses(demo_run, tmp_path):
    out, _ = demo_run
    from training.caption_data import load_caption_dataset
    data = load_caption_dataset("karpathy", out / "data" / "karpathy")
    card = render_dataset_card(data, "Generated aerial captions", "karpathy", "path/to/karpathy")
    card.save(tmp_path / "README.md")
    loaded = DatasetCard.load(tmp_path / "README.md")
    assert loaded.data.to_dict()["pretty_name"] == "Generated aerial captions"
    assert f"| test | {len(data['test'])} | {5 * len(data['test'])} | 5.00 |" in loaded.text
    assert "{{" not in loaded.text and "airport" in loaded.text


def test_card_names_hub_towers_as_base_models_and_llama_licence(demo_run):
    from modeling_rscapret import RSCapRetForConditionalGeneration
    from training.hub import render_model_card
    out, _ = demo_run
    model = RSCapRetForConditionalGeneration.from_pretrained(out / "model")
    model.config.vision_model_name_or_path = "openai/clip-vit-large-patch14"
    model.config.text_model_name_or_path = "meta-llama/Llama-2-7b-hf"
    card = render_model_card(model, out / "model", REPO_ID)
    data = card.data.to_dict()
    assert data["base_model"] == ["openai/clip-vit-large-patch14", "meta-llama/Llama-2-7b-hf"]
    assert data["license"] == "llama2" and "model-index" not in data
    assert "Not evaluated yet" in card.text and "not Hub repos" not in card.text
