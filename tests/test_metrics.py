"""Evaluation: coco-caption numbers identical to pycocoevalcap, retrieval recall on known matrices."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import evaluate
import numpy as np
import pytest

from training.cli import main as cli
from training.metrics.coco_caption.coco_caption import CocoCaption, coco_caption_scores, ptb_tokenize
from training.metrics.retrieval_recall.retrieval_recall import retrieval_recall

METRICS_DIR = os.path.join(os.path.dirname(__file__), "..", "training", "metrics")
PREDICTIONS = [
    "many airplanes are parked near the runway",
    "",  # an empty prediction
    "a river\nflows through the green land",  # a newline inside a caption
    "un aéroport près de la piste 飞机",  # non-ASCII
    "three storage tanks stand in the industrial area .",
    "a beach with the sea on the left",
]
REFERENCES = [
    ["several airplanes are parked near the runway of the airport", "an airport with airplanes and a runway"],
    ["a blue lake lies in the center", "there is a lake surrounded by grass"],
    ["a river flows from top to bottom", "a winding river crosses the area",
     "the river winds\nthrough the meadow"],
    ["un aéroport avec des avions", "飞机 at the airport"],
    ["three white storage tanks", "three storage tanks are arranged on the ground"],
    ["a yellow beach with the sea on the left", "the sea lies on the left of a sandy beach"],
]
KEYS = ["BLEU_1", "BLEU_2", "BLEU_3", "BLEU_4", "METEOR", "ROUGE_L", "CIDEr"]


def pycocoevalcap_reference(predictions, references):
    """The standard coco-caption computation, straight from pycocoevalcap."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": r} for r in refs] for i, refs in enumerate(references)})
    res = tokenizer.tokenize({i: [{"caption": p}] for i, p in enumerate(predictions)})
    bleu = Bleu(4).compute_score(gts, res, verbose=0)[0]
    return dict(zip(KEYS, [*bleu, Meteor().compute_score(gts, res)[0], Rouge().compute_score(gts, res)[0],
                           Cider().compute_score(gts, res)[0]]))


@pytest.fixture(scope="module")
def expected():
    return pycocoevalcap_reference(PREDICTIONS, REFERENCES)


def _assert_same(scores, expected):
    assert sorted(scores) == sorted(KEYS)
    for key in KEYS:
        assert abs(scores[key] - expected[key]) <= 1e-9, (key, scores[key], expected[key])


def test_evaluate_module_loaded_offline_equals_pycocoevalcap(expected):
    assert 0 < expected["CIDEr"] < 10 and expected["BLEU_1"] > 0.3  # a real, non-trivial fixture
    metric = evaluate.load(os.path.join(METRICS_DIR, "coco_caption"))
    _assert_same(metric.compute(predictions=PREDICTIONS, references=REFERENCES), expected)
    assert "CIDEr-D" in metric.description and "x1 scale" in metric.description


def test_module_class_and_cli_equal_pycocoevalcap(expected, tmp_path, capsys):
    metric = CocoCaption()
    metric.add_batch(predictions=PREDICTIONS[:3], references=REFERENCES[:3])
    metric.add_batch(predictions=PREDICTIONS[3:], references=REFERENCES[3:])
    _assert_same(metric.compute(), expected)
    ids = [f"img{i}" for i in range(len(PREDICTIONS))]
    (tmp_path / "pred.json").write_text(json.dumps(dict(zip(ids, PREDICTIONS))))
    (tmp_path / "refs.json").write_text(json.dumps(dict(zip(ids, REFERENCES))))
    assert cli(["score", "--predictions", str(tmp_path / "pred.json"), "--references", str(tmp_path / "refs.json")]) == 0
    _assert_same(json.loads(capsys.readouterr().out), expected)


def test_line_boundaries_other_than_newline_do_not_shift_captions():
    # U+2028 and \r split lines in Java: without cleaning, every later caption would land on the wrong image.
    tokenized = ptb_tokenize({0: ["a\u2028Lake"], 1: ["a\rriver", "x\x85y"], 2: ["a beach."], 3: [""]})
    assert tokenized == {0: ["a lake"], 1: ["a river", "x y"], 2: ["a beach"], 3: [""]}


READ_ONLY_SCRIPT = textwrap.dedent("""
    import json, sys
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    import pycocoevalcap
    try:  # prove the package folder is really read-only: pycocoevalcap's own tokenizer must fail
        PTBTokenizer().tokenize({0: [{"caption": "a test"}]})
        stock = "worked"
    except OSError as error:
        stock = type(error).__name__
    sys.path.insert(0, sys.argv[1])
    from training.metrics.coco_caption.coco_caption import coco_caption_scores
    data = json.loads(sys.argv[2])
    print(json.dumps({"stock": stock, "where": list(pycocoevalcap.__path__)[0],
                      "scores": coco_caption_scores(data["p"], data["r"])}))
""")


def test_read_only_site_packages_in_a_path_with_spaces(expected, tmp_path):
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare to bind-mount a read-only copy of pycocoevalcap")
    import pycocoevalcap
    site = tmp_path / "site packages ro"
    shutil.copytree(list(pycocoevalcap.__path__)[0], site / "pycocoevalcap")
    script = tmp_path / "ro.py"
    script.write_text(READ_ONLY_SCRIPT)
    project = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
    payload = json.dumps({"p": PREDICTIONS, "r": REFERENCES})
    shell = (f'mount --bind "{site}" "{site}" && mount -o remount,ro,bind "{site}" && '
             f'PYTHONPATH="{site}" exec "{sys.executable}" "{script}" "{project}" "$0"')
    proc = subprocess.run(["unshare", "-m", "sh", "-c", shell, payload], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["where"] == str(site / "pycocoevalcap")
    assert result["stock"] in ("OSError", "PermissionError"), "the copy was writable: the test proves nothing"
    _assert_same(result["scores"], expected)


def test_spice_without_corenlp_jars_says_which_jars_where():
    with pytest.raises(RuntimeError, match=r"stanford-corenlp-3\.6\.0\.jar.*spice/lib"):
        coco_caption_scores(["a lake"], [["a lake"]], spice=True)


def test_bad_caption_input_is_clear(tmp_path, capsys):
    with pytest.raises(ValueError, match="2 predictions but 1 reference"):
        coco_caption_scores(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match=r"references\[0\] must be a non-empty list"):
        coco_caption_scores(["a"], ["a lake"])
    (tmp_path / "p.json").write_text(json.dumps({"a": "x", "b": "y"}))
    (tmp_path / "r.json").write_text(json.dumps({"a": ["x"]}))
    assert cli(["score", "--predictions", str(tmp_path / "p.json"), "--references", str(tmp_path / "r.json")]) == 2
    assert "ids without references ['b']" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ retrieval
def test_recall_on_a_known_matrix_with_five_captions_per_image():
    n_images, per_image = 12, 5
    text_to_image = np.repeat(np.arange(n_images), per_image)
    rng = np.random.RandomState(0)
    similarity = rng.rand(n_images, n_images * per_image) * 0.1
    for text, image in enumerate(text_to_image):
        similarity[image, text] = 1.0  # right image first for every text ...
    similarity[:, text_to_image == 3] = 0.0  # ... except image 3's captions, whose own image is last
    similarity[3, text_to_image == 3] = -1.0
    result = retrieval_recall(similarity, text_to_image)
    assert result["t2i"] == pytest.approx({"R@1": 100 * 55 / 60, "R@5": 100 * 55 / 60, "R@10": 100 * 55 / 60})
    # image 3 sees its captions below all 55 others: a miss at every k <= 10
    assert result["i2t"] == pytest.approx({"R@1": 100 * 11 / 12, "R@5": 100 * 11 / 12, "R@10": 100 * 11 / 12})
    assert result["mR"] == pytest.approx(np.mean([100 * 55 / 60] * 3 + [100 * 11 / 12] * 3))


def test_recall_any_caption_hit_ties_and_k_beyond_gallery():
    # 3 images, 2 captions each; image 1's first caption is far away but its second is right on top.
    similarity = np.array([[0.9, 0.8, 0.1, 0.1, 0.1, 0.1],
                           [0.1, 0.1, -0.5, 0.9, 0.1, 0.1],
                           [0.1, 0.1, 0.1, 0.1, 0.7, 0.7]])
    result = retrieval_recall(similarity, [0, 0, 1, 1, 2, 2])
    assert result["i2t"]["R@1"] == 100.0  # any caption in the top 1 is a hit
    assert result["t2i"]["R@1"] == pytest.approx(100 * 5 / 6)  # text 2 ranks its image last
    tie = retrieval_recall(np.ones((4, 4)), [0, 1, 2, 3])
    assert tie["t2i"]["R@1"] == 0.0 and tie["t2i"]["R@5"] == 100.0  # ties count against; k > gallery = all
    assert tie["i2t"]["R@10"] == 100.0


def test_recall_evaluate_module_and_bad_shapes():
    metric = evaluate.load(os.path.join(METRICS_DIR, "retrieval_recall"))
    similarity = np.eye(4)
    assert metric.compute(similarity=similarity.T.tolist(), text_to_image=[0, 1, 2, 3])["mR"] == 100.0
    with pytest.raises(ValueError, match="one image index per text"):
        retrieval_recall(similarity, [0, 1])
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 4\)"):
        retrieval_recall(similarity, [0, 1, 2, 9])
