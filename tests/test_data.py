"""Caption data: loaders on the generated native-format files, RS image decoding, grounded generated captions."""

import json
import shutil

import numpy as np
import pytest
import tifffile
from PIL import Image
from scipy import ndimage

from training.caption_data import FEATURES, CaptionDataError, load_caption_dataset
from training.cli import main as cli
from training.images import ImageDecodeError, load_rs_image, to_rgb_uint8
from training.synthetic import CATEGORIES, NUMBER_WORDS, draw_scene, write_synthetic_dataset

N_IMAGES = 240  # 20 per category: 16 / 2 / 2


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("synth"), n_images=N_IMAGES, seed=3)


@pytest.fixture(scope="module")
def facts(synth):
    return [json.loads(line) for line in (synth / "facts.jsonl").read_text().splitlines()]


def _expected_counts(facts):
    names = {"train": "train", "val": "validation", "test": "test"}
    return {names[s]: sum(f["split"] == s for f in facts) for s in names}


# ---------------------------------------------------------------------------------------------------- loaders
@pytest.mark.parametrize("name, sub", [("rsicd", "karpathy"), ("ucm", "karpathy"), ("nwpu", "nwpu"),
                                       ("imagefolder", "imagefolder")])
def test_loader_yields_the_schema_and_counts(synth, facts, name, sub):
    data = load_caption_dataset(name, synth / sub)
    assert {split: len(ds) for split, ds in data.items()} == _expected_counts(facts) == {
        "train": 192, "validation": 24, "test": 24}
    by_name = {f["filename"]: f for f in facts}
    for split, ds in data.items():
        assert ds.features == FEATURES
        for row in ds.select(range(0, len(ds), 7)):
            truth = by_name[row["filename"].rsplit(".", 1)[0]]
            assert row["captions"] == truth["captions"]
            assert row["source"] == name
            assert row["category"].replace(" ", "") == truth["category"].replace(" ", "")
            assert row["image"].mode == "RGB" and row["image"].size == (64, 64)
    assert data.skipped == []


def test_cap4_union_adds_up_and_keeps_source(synth):
    roots = {"rsicd": synth / "karpathy", "sydney": synth / "karpathy", "nwpu": synth / "nwpu"}
    union = load_caption_dataset("cap4", roots)
    parts = {name: load_caption_dataset(name, root) for name, root in roots.items()}
    for split in ("train", "validation", "test"):
        assert len(union[split]) == sum(len(p[split]) for p in parts.values())
        sources = list(union[split]["source"])
        assert {s: sources.count(s) for s in set(sources)} == {n: len(p[split]) for n, p in parts.items()}
    with pytest.raises(ValueError, match="cap4 takes a dict"):
        load_caption_dataset("cap4", {"coco": synth})


def test_user_csv_with_several_captions_and_a_flat_folder(tmp_path):
    for i in range(20):
        Image.new("RGB", (16, 16), (i * 10, 0, 0)).save(tmp_path / f"img{i}.png")
    rows = ["file_name,caption_1,caption_2"] + [f"img{i}.png,red square {i},a square {i}" for i in range(20)]
    (tmp_path / "metadata.csv").write_text("\n".join(rows) + "\n")
    data = load_caption_dataset("imagefolder", tmp_path)
    assert {s: len(d) for s, d in data.items()} == {"train": 16, "validation": 2, "test": 2}
    row = data["train"][0]
    assert row["captions"] == [f"red square {row['filename'][3:-4]}", f"a square {row['filename'][3:-4]}"]
    assert sorted(sum((list(d["filename"]) for d in data.values()), [])) == sorted(f"img{i}.png" for i in range(20))


# ---------------------------------------------------------------------------------------------------- decoding
def _write_variants(folder):
    rng = np.random.RandomState(0)
    Image.fromarray((rng.rand(20, 30) * 255).astype("uint8"), "L").save(folder / "grey.png")
    Image.fromarray((rng.rand(20, 30, 4) * 255).astype("uint8"), "RGBA").save(folder / "rgba.png")
    Image.fromarray((rng.rand(20, 30, 3) * 255).astype("uint8")).convert("P").save(folder / "palette.png")
    Image.fromarray((rng.rand(20, 30) * 60000).astype("uint16")).save(folder / "grey16.tif")
    tifffile.imwrite(folder / "rgb16.tif", (rng.rand(20, 30, 3) * 4000).astype("uint16"))
    tifffile.imwrite(folder / "bands4.tif", (rng.rand(4, 20, 30) * 4000).astype("uint16"),
                     photometric="minisblack", planarconfig="separate")


@pytest.mark.parametrize("name", ["grey.png", "rgba.png", "palette.png", "grey16.tif", "rgb16.tif", "bands4.tif"])
def test_rs_images_decode_to_rgb_uint8(tmp_path, name):
    _write_variants(tmp_path)
    pixels = np.asarray(load_rs_image(tmp_path / name))
    assert pixels.shape == (20, 30, 3) and pixels.dtype == np.uint8
    assert pixels.max() >= 250, "16-bit data must be stretched over the 8-bit range, not truncated"


def test_sixteen_bit_stretch_and_band_choice_follow_the_documented_rule():
    band = np.linspace(0, 10000, 101).astype(np.uint16)[None, :]  # percentiles 2 and 98 are 200 and 9800
    stretched = to_rgb_uint8(np.stack([band, band * 0, band * 0, band], axis=-1))
    assert stretched[0, 2, 0] == 0 and stretched[0, 98, 0] == 255 and stretched[0, 50, 0] == 128
    bgrn = np.stack([np.full((2, 2), v, np.uint8) for v in (10, 20, 30, 40)], axis=-1)
    assert to_rgb_uint8(bgrn, rgb_bands=(2, 1, 0))[0, 0].tolist() == [30, 20, 10]
    with pytest.raises(ImageDecodeError, match="rgb_bands"):
        to_rgb_uint8(bgrn, rgb_bands=(0, 1, 7))


def test_truncated_and_missing_files_are_named(tmp_path):
    _write_variants(tmp_path)
    data = (tmp_path / "rgba.png").read_bytes()
    (tmp_path / "broken.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError, match="broken.png: cannot decode"):
        load_rs_image(tmp_path / "broken.png")
    with pytest.raises(ImageDecodeError, match="nowhere.tif: image file not found"):
        load_rs_image(tmp_path / "nowhere.tif")


def _damaged_copy(synth, tmp_path):
    root = tmp_path / "damaged"
    shutil.copytree(synth / "karpathy", root)
    annotation = json.loads((root / "dataset_synth.json").read_text())
    test_items = [i for i in annotation["images"] if i["split"] == "test"]
    truncated, missing, captionless = test_items[0], test_items[1], test_items[2]
    path = root / "images" / truncated["filename"]
    path.write_bytes(path.read_bytes()[:300])
    (root / "images" / missing["filename"]).unlink()
    captionless["sentences"] = []
    (root / "dataset_synth.json").write_text(json.dumps(annotation))
    return root, truncated["filename"], missing["filename"], captionless["filename"]


def test_bad_records_raise_naming_file_and_record_or_are_skipped_and_reported(synth, tmp_path):
    root, truncated, missing, captionless = _damaged_copy(synth, tmp_path)
    for attempt in range(2):  # the second load comes from the Arrow cache and must report the same
        data = load_caption_dataset("rsicd", root, on_error="skip")
        assert len(data["test"]) == 24 - 3 and len(data["train"]) == 192
        reasons = {bad.path.rsplit("/", 1)[-1]: bad.reason for bad in data.skipped}
        assert set(reasons) == {truncated, missing, captionless}
        assert "cannot decode" in reasons[truncated] and reasons[missing] == "image file not found"
        assert reasons[captionless] == "record has no captions"
    with pytest.raises(CaptionDataError, match=rf"images\[\d+\] \({missing}\): image file not found"):
        load_caption_dataset("rsicd", root)
    (root / "images" / missing).write_bytes((synth / "karpathy" / "images" / missing).read_bytes())
    with pytest.raises(CaptionDataError, match=rf"images\[\d+\] \({captionless}\): record has no captions"):
        load_caption_dataset("rsicd", root)
    annotation = json.loads((root / "dataset_synth.json").read_text())
    next(i for i in annotation["images"] if i["filename"] == captionless)["sentences"] = [{"raw": "a lake"}]
    (root / "dataset_synth.json").write_text(json.dumps(annotation))
    with pytest.raises(CaptionDataError, match=rf"\({truncated}\).*cannot decode"):
        load_caption_dataset("rsicd", root)


def test_unknown_format_and_bad_json_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unknown data set 'coco'"):
        load_caption_dataset("coco", tmp_path)
    (tmp_path / "dataset_x.json").write_text("{not json")
    with pytest.raises(CaptionDataError, match="dataset_x.json: not valid json"):
        load_caption_dataset("rsicd", tmp_path)


# ----------------------------------------------------------------------------------------------- generated set
def _count_blobs(image, colour, tolerance=30):
    pixels = np.asarray(image).astype(int)
    mask = (np.abs(pixels - np.array(colour)).max(-1) < tolerance)
    labels, n = ndimage.label(mask)
    sizes = ndimage.sum(mask, labels, range(1, n + 1))
    return int((sizes >= 8).sum())


@pytest.mark.parametrize("category, colour", [("airport", (240, 240, 240)), ("storage tanks", (240, 240, 240)),
                                              ("residential", None), ("parking lot", None)])
def test_generated_counts_are_what_is_drawn_and_what_captions_say(category, colour):
    from training.synthetic import COLOURS
    for seed in range(12):
        image, facts = draw_scene(category, seed, image_size=64)
        drawn = _count_blobs(image, colour or COLOURS[facts.colour])
        assert drawn == facts.count, f"{category} seed {seed}: drew {drawn}, facts say {facts.count}"
        numbers = [w for c in facts.captions for w in c.split() if w in NUMBER_WORDS]
        assert numbers and set(numbers) == {NUMBER_WORDS[facts.count]}


def test_generated_captions_name_their_class_and_count(facts):
    keywords = {"farmland": "farmland", "forest": "forest", "lake": "lake", "river": "river",
                "residential": "house|residential|building", "airport": "airport|airplane",
                "parking lot": "parking lot", "beach": "beach|umbrella", "baseball field": "baseball",
                "freeway": "freeway|car", "storage tanks": "tank", "desert": "desert"}
    import re
    assert set(keywords) == set(CATEGORIES) and len(CATEGORIES) >= 10
    for fact in facts:
        assert len(fact["captions"]) == 5 and len(set(fact["captions"])) == 5
        for caption in fact["captions"]:
            assert re.search(keywords[fact["category"]], caption), (fact["category"], caption)
            if fact["count"] is not None:
                said = [w for w in caption.split() if w in NUMBER_WORDS or w == "no"]
                assert all(w == NUMBER_WORDS[fact["count"]] or (w == "no" and fact["count"] == 0) for w in said)


def test_generation_is_deterministic_for_a_seed(tmp_path):
    a = write_synthetic_dataset(tmp_path / "a", n_images=24, seed=5)
    b = write_synthetic_dataset(tmp_path / "b", n_images=24, seed=5)
    c = write_synthetic_dataset(tmp_path / "c", n_images=24, seed=6)
    assert (a / "facts.jsonl").read_text() == (b / "facts.jsonl").read_text()
    first = sorted((a / "karpathy" / "images").iterdir())[0].name
    assert (a / "karpathy/images" / first).read_bytes() == (b / "karpathy/images" / first).read_bytes()
    assert (a / "karpathy/images" / first).read_bytes() != (c / "karpathy/images" / first).read_bytes()


def test_cli_synth_and_inspect(tmp_path, capsys):
    assert cli(["data", "synth", "--out", str(tmp_path / "s"), "--n-images", "36", "--seed", "1"]) == 0
    assert cli(["data", "inspect", str(tmp_path / "s" / "nwpu"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert report["format"] == "nwpu"
    assert sum(s["images"] for s in report["splits"].values()) == 36
    assert report["splits"]["train"]["captions_per_image"] == {"min": 5, "mean": 5.0, "max": 5}
    assert len(report["categories"]) == 12
    (tmp_path / "empty").mkdir()
    assert cli(["data", "inspect", str(tmp_path / "empty")]) == 2
    assert "not a caption set" in capsys.readouterr().err


def test_a_small_user_set_with_an_empty_split_loads(tmp_path):
    for i in range(4):
        Image.new("RGB", (8, 8), (0, i * 40, 0)).save(tmp_path / f"g{i}.png")
    (tmp_path / "metadata.jsonl").write_text("".join(json.dumps({"file_name": f"g{i}.png", "captions": [f"green {i}"]})
                                                     + "\n" for i in range(4)))
    data = load_caption_dataset("imagefolder", tmp_path)
    assert {s: len(d) for s, d in data.items()} == {"train": 4, "validation": 0, "test": 0}
    assert data["test"].features == FEATURES
