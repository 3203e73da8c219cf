"""Inference: batched captioning, the gallery index, retrieval, the retrieval grid and dialogue with [RET]."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from training.cli import main as cli
from training.dialogue import RSCapRetChat
from training.gallery import GalleryIndex, model_identity
from training.inference import caption_files, load_model, retrieve
from training.run_eval import embed_texts


@pytest.fixture(scope="module")
def demo_model(demo_run):
    out, _ = demo_run
    model, processor = load_model(out / "model")
    return out, model, processor


@pytest.fixture()
def gallery(demo_run, tmp_path):
    out, _ = demo_run
    folder = tmp_path / "gallery"
    folder.mkdir()
    for path in sorted((out / "data" / "karpathy" / "images").glob("*_000[1-3].tif")):
        shutil.copy(path, folder)
    return folder


def test_batched_captions_equal_one_by_one_and_cli_equals_api(demo_model, gallery, capsys):
    out, model, processor = demo_model
    paths = sorted(str(p) for p in gallery.glob("*.tif"))[:6]
    batched = caption_files(model, processor, paths, batch_size=4)
    single = [caption_files(model, processor, [p], batch_size=1)[0] for p in paths]
    assert batched == single and all(batched)
    assert len(set(batched)) > 1, "different scenes should get different captions"
    assert cli(["caption", str(out / "model"), *paths, "--json", "--batch-size", "3"]) == 0
    assert json.loads(capsys.readouterr().out) == dict(zip(paths, batched))


def test_index_round_trip_matches_brute_force_and_grows_incrementally(demo_model, gallery, tmp_path):
    out, model, processor = demo_model
    index = GalleryIndex.build(model, processor, gallery)
    index.save(tmp_path / "index")
    reloaded = GalleryIndex.load(tmp_path / "index")
    assert reloaded.paths == index.paths and np.array_equal(reloaded.vectors, index.vectors)
    queries = embed_texts(model, processor, ["three airplanes are parked near the runway", "a yellow desert"]).numpy()
    brute = np.argsort(-(queries @ reloaded.vectors.T), axis=1)[:, :5]
    for row, hits in enumerate(reloaded.search(queries, 5)):
        assert [h.path for h in hits] == [reloaded.paths[i] for i in brute[row]]

    extra = tmp_path / "more"
    extra.mkdir()
    new_file = sorted((out / "data" / "karpathy" / "images").glob("*_0005.tif"))[0]
    shutil.copy(new_file, extra)
    shutil.copy(next(gallery.glob("*.tif")), extra)  # same content at another path: a new entry
    before = reloaded.vectors.copy()
    calls = []
    import training.gallery as gallery_module
    original = gallery_module.embed_image_files
    gallery_module.embed_image_files = lambda m, p, paths, b=32: calls.append(list(paths)) or original(m, p, paths, b)
    try:
        added = reloaded.add_folder(model, processor, extra)
    finally:
        gallery_module.embed_image_files = original
    assert added == 2 and len(calls) == 1 and len(calls[0]) == 2  # only the new files were embedded
    assert np.array_equal(reloaded.vectors[: len(before)], before)
    reloaded.save(tmp_path / "index")
    grown = GalleryIndex.load(tmp_path / "index")
    assert len(grown) == len(index) + 2
    hit = grown.search(grown.vectors[-2:-1], 1)[0][0]
    assert hit.path.endswith(new_file.name)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_indexes_find_the_exact_top_hit(demo_model, gallery, kind):
    _, model, processor = demo_model
    index = GalleryIndex.build(model, processor, gallery, kind=kind)
    hits = index.search(index.vectors[:4], 1)
    assert [h[0].path for h in hits] == index.paths[:4]


def test_foreign_index_empty_folder_bad_image_and_large_k_get_clear_messages(demo_model, gallery, tmp_path):
    out, model, processor = demo_model
    index = GalleryIndex.build(model, processor, gallery)
    index.save(tmp_path / "index")
    other, _ = load_model(out / "model")
    with torch.no_grad():
        other.image_retrieval_projection.weight.mul_(1.5)
    assert model_identity(other) != model_identity(model)
    with pytest.raises(ValueError, match="built with another model"):
        retrieve(other, processor, index, query="a lake")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: no images found"):
        GalleryIndex.build(model, processor, tmp_path / "empty")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.tif").write_bytes(b"II*\x00 not really a tiff")
    with pytest.raises(ValueError, match="cannot index .*bad.tif"):
        index.add_folder(model, processor, broken)
    assert len(GalleryIndex.load(tmp_path / "index")) == len(index)  # the saved index is untouched
    hits, note = retrieve(model, processor, index, query="a lake", k=len(index) + 10)
    assert len(hits) == len(index) and note == f"k={len(index) + 10} but the index holds {len(index)} images: returning all {len(index)}."


def test_cli_index_retrieve_and_grid(demo_model, gallery, tmp_path, capsys):
    out, model, processor = demo_model
    assert cli(["index", str(out / "model"), str(gallery), "--out", str(tmp_path / "idx")]) == 0
    capsys.readouterr()
    assert cli(["retrieve", str(out / "model"), "--index", str(tmp_path / "idx"), "--query",
                "two airplanes are parked near the runway of the airport", "-k", "3", "--grid", str(tmp_path / "g.png")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all(line.split("\t")[2].startswith(str(gallery)) for line in lines)
    assert "airport" in lines[0]
    picture = Image.open(tmp_path / "g.png")
    assert picture.width > 4 * 160 and picture.height > 160
    first = sorted(gallery.glob("*.tif"))[0]
    assert cli(["retrieve", str(out / "model"), "--index", str(tmp_path / "idx"), "--image", str(first), "-k", "1"]) == 0
    assert capsys.readouterr().out.split("\t")[2].strip() == str(first.resolve())  # an image finds itself first
    assert cli(["retrieve", str(out / "model"), "--index", str(tmp_path / "missing"), "--query", "x"]) == 2
    assert "not an rs-capret index" in capsys.readouterr().err


def test_dialogue_returns_indexed_images_at_ret_and_goes_on_with_them(demo_model, gallery):
    out, _, processor = demo_model
    model, _ = load_model(out / "model")
    index = GalleryIndex.build(model, processor, gallery)
    scene = sorted(gallery.glob("lake_*.tif"))[0]
    chat = RSCapRetChat(model, processor, index)
    plain = chat.send(images=[str(scene)])
    assert not plain.emitted_ret and plain.text and plain.images == []

    # make [RET] likely: its output row along the LM's final hidden state at the reply's first step
    prompt = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}]}], tokenize=False)
    inputs = processor(images=[Image.open(scene)], text=[prompt], return_tensors="pt")
    with torch.no_grad():
        features = model.get_vision_features(inputs["pixel_values"])
        hidden = model.language_model.base_model(inputs_embeds=model._merge_inputs(inputs["input_ids"], features)
                                                 ).last_hidden_state[0, -1]
        model.ret_output_embedding.copy_(hidden / hidden.norm() ** 2 * 60)
    chat = RSCapRetChat(model, processor, index, min_words_before_ret=2)
    first = chat.send(images=[str(scene)])
    assert first.emitted_ret and len(first.text.split()) >= 2 and len(first.images) == 1
    assert first.images[0].path in index.paths
    assert len(chat.images) == 2  # the user's scene and the retrieved image: the conversation holds both
    assert chat.messages[-1]["content"][-1] == {"type": "image"}
    second = chat.send("more like this")
    assert second.emitted_ret and second.images and second.images[0].path != first.images[0].path  # never twice
    assert len(chat.images) == 3
    late = RSCapRetChat(model, processor, index, min_words_before_ret=5).send(images=[str(scene)])
    assert not late.emitted_ret or len(late.text.split()) >= 5


def test_caption_cli_decodes_a_multiband_planar_tiff(demo_model, gallery, tmp_path, capsys):
    import tifffile
    out, model, processor = demo_model
    original = sorted(gallery.glob("lake_*.tif"))[0]
    rgb = np.asarray(Image.open(original).convert("RGB"))
    nir = np.full(rgb.shape[:2], 200, np.uint8)
    planar = np.concatenate([rgb.transpose(2, 0, 1), nir[None]])  # R, G, B, NIR; bands-first
    tifffile.imwrite(tmp_path / "scene4.tif", planar, photometric="minisblack", planarconfig="separate")
    assert cli(["caption", str(out / "model"), str(tmp_path / "scene4.tif"), str(original), "--json"]) == 0
    captions = json.loads(capsys.readouterr().out)
    assert captions[str(tmp_path / "scene4.tif")] == captions[str(original)] != ""


def test_chat_cli_runs_a_conversation_from_stdin(demo_model, gallery, tmp_path, monkeypatch, capsys):
    import io
    out, model, processor = demo_model
    assert cli(["index", str(out / "model"), str(gallery), "--out", str(tmp_path / "idx")]) == 0
    scene = sorted(gallery.glob("airport_*.tif"))[0]
    monkeypatch.setattr("sys.stdin", io.StringIO(f"/image {scene}\n\nwhat else\n/reset\n/quit\nnever read\n"))
    capsys.readouterr()
    assert cli(["chat", str(out / "model"), "--index", str(tmp_path / "idx"), "--ret-scale", "1.0"]) == 0
    replies = [line for line in capsys.readouterr().out.splitlines() if line.startswith("rs-capret: ")]
    assert len(replies) == 2 and "air" in replies[0]
