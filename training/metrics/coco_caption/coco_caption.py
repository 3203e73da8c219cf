"""coco-caption metrics (BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, optional SPICE) as an `evaluate` module.

Load offline with `evaluate.load("<path to this folder>")`, or import `CocoCaption` directly. Numbers are those of
pycocoevalcap (its PTB tokenizer and scorers run unchanged), because only they are comparable with published
captioning results; nltk / sacrebleu / torchmetrics numbers are not.

What this wrapper changes around pycocoevalcap, and why:
- its PTB tokenizer writes a temp file next to its own code: that fails on a read-only site-packages, so the same
  Java command runs here on a temp file in a private temp folder, with absolute paths (spaces are fine);
- any Unicode line boundary inside a caption (\\n, \\r, U+2028, ...) is replaced by a space: the Java tools
  exchange one caption per line, and one stray boundary would shift every later caption onto the wrong image
  (pycocoevalcap replaces only \\n);
- the number of tokenized lines is checked, so a mismatch is an error rather than silently dropped images;
- METEOR is started with absolute paths and its paraphrase table passed explicitly (METEOR cannot find it
  itself under a path with a space), and its Java process is closed when scoring ends.
"""

import os
import shutil
import subprocess
import tempfile

import datasets
import evaluate

_DESCRIPTION = """
coco-caption captioning metrics computed by pycocoevalcap after PTB tokenization: BLEU_1..BLEU_4, METEOR, ROUGE_L,
CIDEr and (opt-in) SPICE. CIDEr is coco-caption's CIDEr-D (document frequencies from the evaluated references,
Gaussian length penalty, clipped counts) on the x1 scale remote-sensing papers report (e.g. 2.5, not 250).
SPICE needs Stanford CoreNLP 3.6.0 jars that pycocoevalcap downloads at first use; pass spice=True only where
they are present (see SPICE_JARS).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): one generated caption per image.
    references (`list[list[str]]`): all reference captions of each image.
    spice (`bool`, defaults to False): also compute SPICE (needs the CoreNLP jars, Java 8).
Returns:
    dict with BLEU_1, BLEU_2, BLEU_3, BLEU_4, METEOR, ROUGE_L, CIDEr (and SPICE).
Example:
    >>> metric = evaluate.load("training/metrics/coco_caption")
    >>> metric.compute(predictions=["a plane on a runway"], references=[["an airplane on the runway"]])
"""

SPICE_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")
# Every boundary str.splitlines() knows; Java's line reader splits on some of them.
_LINE_BOUNDARIES = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def clean_caption(text: str) -> str:
    """One line of text: Unicode line boundaries become spaces."""
    return str(text).translate({ord(c): " " for c in _LINE_BOUNDARIES})


def _package_dir() -> str:
    import pycocoevalcap

    return list(pycocoevalcap.__path__)[0]


def ptb_tokenize(captions_per_key: dict) -> dict:
    """pycocoevalcap's PTBTokenizer.tokenize with the same Java command, run on a private temp file."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS, STANFORD_CORENLP_3_4_1_JAR

    keys = [k for k, captions in captions_per_key.items() for _ in captions]
    lines = [clean_caption(c) for captions in captions_per_key.values() for c in captions]
    jar = os.path.join(_package_dir(), "tokenizer", STANFORD_CORENLP_3_4_1_JAR)
    workdir = tempfile.mkdtemp(prefix="rscapret-ptb-")
    try:
        text_file = os.path.join(workdir, "captions.txt")
        with open(text_file, "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
        completed = subprocess.run(
            ["java", "-cp", jar, "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase", text_file],
            cwd=workdir, capture_output=True, check=False,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if completed.returncode != 0:
        raise RuntimeError(f"PTB tokenizer (java) failed: {completed.stderr.decode(errors='replace')[-2000:]}")
    tokenized = completed.stdout.decode("utf-8").split("\n")
    if len(tokenized) < len(lines):  # a trailing empty caption may lose its line: pad, never shift
        tokenized += [""] * (len(lines) - len(tokenized))
    result = {}
    for key, line in zip(keys, tokenized):
        result.setdefault(key, []).append(" ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS))
    return result


def _meteor_score(gts: dict, res: dict) -> float:
    """pycocoevalcap's METEOR protocol on a METEOR process started with absolute paths.

    pycocoevalcap starts `java -jar meteor-1.5.jar` relative to its folder, and METEOR then finds its paraphrase
    table through its own URL-encoded location, which fails when the path has a space: the table is passed with
    `-a` here. If Java fails mid-way, pycocoevalcap's scorer keeps its lock and its `__del__` would deadlock; the
    process and the lock are cleaned up here instead.
    """
    import threading

    from pycocoevalcap.meteor.meteor import METEOR_JAR, Meteor

    folder = os.path.join(_package_dir(), "meteor")
    scorer = Meteor.__new__(Meteor)  # its __init__ would start the process with relative paths
    scorer.lock = threading.Lock()
    scorer.meteor_p = subprocess.Popen(
        ["java", "-jar", "-Xmx2G", os.path.join(folder, METEOR_JAR), "-", "-", "-stdio", "-l", "en", "-norm",
         "-a", os.path.join(folder, "data", "paraphrase-en.gz")],
        cwd=folder, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        return scorer.compute_score(gts, res)[0]
    except ValueError as error:  # an empty line instead of a number: the Java side died
        raise RuntimeError(f"METEOR (java) failed: {scorer.meteor_p.stderr.read().decode(errors='replace')[-2000:]}") from error
    finally:
        scorer.meteor_p.kill()
        scorer.meteor_p.wait()
        for stream in (scorer.meteor_p.stdin, scorer.meteor_p.stdout, scorer.meteor_p.stderr):
            stream.close()
        scorer.lock = threading.Lock()  # released, so Meteor.__del__ cannot block


def check_spice_available() -> None:
    """SPICE's CoreNLP jars cannot be downloaded here: say which jars go where, before any work is done."""
    lib = os.path.join(_package_dir(), "spice", "lib")
    missing = [jar for jar in SPICE_JARS if not os.path.isfile(os.path.join(lib, jar))]
    if missing:
        raise RuntimeError(
            f"SPICE needs Stanford CoreNLP 3.6.0: place {', '.join(missing)} in {lib} (from "
            "stanford-corenlp-full-2015-12-09.zip) and run with Java 8; or compute without spice=True."
        )


def _spice_score(gts: dict, res: dict) -> float:
    from pycocoevalcap.spice.spice import Spice

    return Spice().compute_score(gts, res)[0]


def coco_caption_scores(predictions, references, spice: bool = False) -> dict:
    """The coco-caption metrics for parallel lists of predictions and reference lists."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if len(predictions) != len(references):
        raise ValueError(f"coco_caption: {len(predictions)} predictions but {len(references)} reference lists.")
    if not predictions:
        raise ValueError("coco_caption: no predictions to score.")
    for index, refs in enumerate(references):
        if isinstance(refs, str) or not refs:
            raise ValueError(f"coco_caption: references[{index}] must be a non-empty list of captions, got {refs!r}.")
    if spice:
        check_spice_available()
    gts = ptb_tokenize({i: list(refs) for i, refs in enumerate(references)})
    res = ptb_tokenize({i: [pred] for i, pred in enumerate(predictions)})
    bleu = Bleu(4).compute_score(gts, res, verbose=0)[0]
    scores = {f"BLEU_{n + 1}": float(bleu[n]) for n in range(4)}
    scores["METEOR"] = float(_meteor_score(gts, res))
    scores["ROUGE_L"] = float(Rouge().compute_score(gts, res)[0])
    scores["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    if spice:
        scores["SPICE"] = float(_spice_score(gts, res))
    return scores


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class CocoCaption(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Chen et al., Microsoft COCO Captions: Data Collection and Evaluation Server, 2015.",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": datasets.Value("string"),
                "references": datasets.Sequence(datasets.Value("string")),
            }),
            codebase_urls=["https://github.com/salaniz/pycocoevalcap"],
        )

    def _compute(self, predictions, references, spice=False):
        return coco_caption_scores(predictions, references, spice=spice)
