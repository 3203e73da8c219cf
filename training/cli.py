"""`rscapret`: the command-line face of rs-capret. Each subcommand imports its heavy modules only when run."""

from __future__ import annotations

import argparse
import json
import sys


def _data_synth(args):
    from .synthetic import write_synthetic_dataset

    out = write_synthetic_dataset(args.out, n_images=args.n_images, seed=args.seed, image_size=args.image_size)
    print(f"wrote {args.n_images} generated aerial images with 5 captions each to {out}")


def _data_inspect(args):
    from .data_inspect import inspect_caption_set

    report = inspect_caption_set(args.path, fmt=args.format, examples=args.examples)
    print(json.dumps(report, indent=2) if args.json else report["text"])


def _score(args):
    from .metrics.coco_caption.coco_caption import coco_caption_scores

    predictions, references = _read_json_object(args.predictions), _read_json_object(args.references)
    missing, extra = sorted(set(predictions) - set(references)), sorted(set(references) - set(predictions))
    if missing or extra:
        raise ValueError(f"{args.predictions} and {args.references} must hold the same ids: ids without references "
                         f"{missing[:5]}, ids without predictions {extra[:5]}.")
    ids = sorted(predictions)
    for key in ids:
        if not isinstance(predictions[key], str):
            raise ValueError(f"{args.predictions}: id {key!r} must map to one caption string.")
        if not isinstance(references[key], list) or not references[key]:
            raise ValueError(f"{args.references}: id {key!r} must map to a non-empty list of captions.")
    scores = coco_caption_scores([predictions[k] for k in ids], [references[k] for k in ids], spice=args.spice)
    print(json.dumps(scores, indent=2))


def _read_json_object(path):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid json ({error}).") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a json object mapping ids to captions.")
    return data


def _demo(args):
    from .demo import DemoSettings, run_demo

    run_demo(args.output_dir, DemoSettings(n_images=args.n_images, seed=args.seed), recipe_overrides=args.overrides)


def _train(args):
    from .train import parse_recipe, run_training

    run_training(*parse_recipe(args.recipe, args.overrides))


def _train_clip(args):
    from .train_clip import parse_clip_recipe, run_clip_training

    print(run_clip_training(*parse_clip_recipe(args.recipe, args.overrides)))


def _eval(args):
    from .run_eval import default_out_dir, evaluate_release, results_table

    results = evaluate_release(args.model, args.dataset, args.root, split=args.split,
                               out_dir=args.out or default_out_dir(args.model), batch_size=args.batch_size,
                               num_beams=args.num_beams)
    print(results_table(results))


def _caption(args):
    from .inference import caption_files, expand_image_args, load_model

    paths = expand_image_args(args.images)
    model, processor = load_model(args.model)
    captions = caption_files(model, processor, paths, prompt=args.prompt, batch_size=args.batch_size,
                             num_beams=args.num_beams, max_new_tokens=args.max_new_tokens)
    if args.json:
        print(json.dumps(dict(zip(paths, captions)), indent=2))
    else:
        for path, caption in zip(paths, captions):
            print(f"{path}\t{caption}")


def _index(args):
    from .gallery import GalleryIndex
    from .inference import load_model

    model, processor = load_model(args.model)
    if args.add:
        index = GalleryIndex.load(args.out)
        added = index.add_folder(model, processor, args.images, batch_size=args.batch_size)
        print(f"added {added} new images; the index now holds {len(index)}")
    else:
        index = GalleryIndex.build(model, processor, args.images, kind=args.kind, batch_size=args.batch_size)
        print(f"indexed {len(index)} images ({args.kind})")
    index.save(args.out)


def _retrieve(args):
    from .gallery import GalleryIndex
    from .inference import load_model, render_retrieval_grid, retrieve

    index = GalleryIndex.load(args.index)
    model, processor = load_model(args.model)
    hits, note = retrieve(model, processor, index, query=args.query, image=args.image, k=args.k)
    if note:
        print(note, file=sys.stderr)
    for rank, hit in enumerate(hits, start=1):
        print(f"{rank}\t{hit.score:.4f}\t{hit.path}")
    if args.grid:
        print(f"grid: {render_retrieval_grid(hits, args.grid, query=args.query, image=args.image)}", file=sys.stderr)


def _chat(args):
    from .dialogue import RSCapRetChat
    from .gallery import GalleryIndex
    from .inference import load_model

    model, processor = load_model(args.model)
    index = GalleryIndex.load(args.index) if args.index else None
    chat = RSCapRetChat(model, processor, index, ret_scale=args.ret_scale, min_words_before_ret=args.min_words)
    print("type a message; '/image PATH' attaches an image to your next message; '/reset'; '/quit'")
    pending = []
    for line in sys.stdin:
        line = line.strip()
        if line in ("/quit", "/exit"):
            break
        if line == "/reset":
            chat.reset()
            pending = []
            continue
        if line.startswith("/image "):
            pending.append(line[len("/image "):].strip())
            continue
        if not line and not pending:
            continue
        turn = chat.send(line or None, images=pending)
        pending = []
        print(f"rs-capret: {turn.text}")
        for hit in turn.images:
            print(f"  [image] {hit.path}  ({hit.score:.3f})")
        sys.stdout.flush()


def _push(args):
    from .hub import push_release

    print(push_release(args.model_dir, args.repo_id, light=args.light, private=args.private, dry_run=args.dry_run,
                       license=args.license))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rscapret", description="RS-CapRet: caption and retrieve remote-sensing images.")
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="caption data sets: generate, inspect").add_subparsers(dest="data_command",
                                                                                                     required=True)
    synth = data.add_parser("synth", help="write the generated aerial caption set in the native formats")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--n-images", type=int, default=2000)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--image-size", type=int, default=64)
    synth.set_defaults(func=_data_synth)

    inspect = data.add_parser("inspect", help="counts, captions per image, caption lengths and examples of a caption set")
    inspect.add_argument("path", help="a Karpathy-json folder, an NWPU folder or an imagefolder")
    inspect.add_argument("--format", default="auto", choices=["auto", "karpathy", "nwpu", "imagefolder"])
    inspect.add_argument("--examples", type=int, default=3)
    inspect.add_argument("--json", action="store_true", help="print the report as json")
    inspect.set_defaults(func=_data_inspect)

    score = commands.add_parser("score", help="coco-caption metrics (pycocoevalcap) for any system's captions")
    score.add_argument("--predictions", required=True, help="json {id: caption}")
    score.add_argument("--references", required=True, help="json {id: [captions]}")
    score.add_argument("--spice", action="store_true", help="also SPICE (needs Stanford CoreNLP 3.6.0 jars)")
    score.set_defaults(func=_score)

    demo = commands.add_parser("demo", help="the whole method offline on CPU: data, towers, training, eval, reload")
    demo.add_argument("--output-dir", default="demo-output")
    demo.add_argument("--n-images", type=int, default=2000)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("overrides", nargs=argparse.REMAINDER, help="recipe overrides, e.g. --num_train_epochs 4")
    demo.set_defaults(func=_demo)

    for name, func, text in (("train", _train, "train RS-CapRet from a recipe (recipes/*.yaml)"),
                             ("train-clip", _train_clip, "the CLIP-Cap-4 stage: contrastive CLIP tuning")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("recipe")
        sub.add_argument("overrides", nargs=argparse.REMAINDER, help="--key value pairs overriding the recipe")
        sub.set_defaults(func=func)

    evaluation = commands.add_parser("eval", help="caption and retrieval metrics of a model on a data set split")
    evaluation.add_argument("model", help="release folder or Hub id")
    evaluation.add_argument("--dataset", required=True, help="rsicd, ucm, sydney, nwpu, karpathy, imagefolder, cap4")
    evaluation.add_argument("--root", required=True, help="data folder (cap4: 'rsicd=DIR,ucm=DIR,...')")
    evaluation.add_argument("--split", default="test")
    evaluation.add_argument("--out", help="folder for results.json and results.md (default MODEL/eval)")
    evaluation.add_argument("--batch-size", type=int, default=32)
    evaluation.add_argument("--num-beams", type=int, default=1)
    evaluation.set_defaults(func=_eval)

    caption = commands.add_parser("caption", help="caption images (files or folders)")
    caption.add_argument("model")
    caption.add_argument("images", nargs="+", help="image files or folders")
    caption.add_argument("--prompt", default="")
    caption.add_argument("--num-beams", type=int, default=1)
    caption.add_argument("--batch-size", type=int, default=16)
    caption.add_argument("--max-new-tokens", type=int, default=32)
    caption.add_argument("--json", action="store_true")
    caption.set_defaults(func=_caption)

    index = commands.add_parser("index", help="embed an image folder once into a retrieval index")
    index.add_argument("model")
    index.add_argument("images", help="folder of images (searched recursively)")
    index.add_argument("--out", required=True, help="index folder")
    index.add_argument("--kind", default="flat", choices=["flat", "hnsw", "ivf"], help="flat = exact search")
    index.add_argument("--add", action="store_true", help="add the folder's new images to an existing index")
    index.add_argument("--batch-size", type=int, default=32)
    index.set_defaults(func=_index)

    retrieve = commands.add_parser("retrieve", help="text->image or image->image search in an index")
    retrieve.add_argument("model")
    retrieve.add_argument("--index", required=True)
    retrieve.add_argument("--query", help="text query")
    retrieve.add_argument("--image", help="query image")
    retrieve.add_argument("-k", type=int, default=5)
    retrieve.add_argument("--grid", help="write the query and its top-k as one PNG")
    retrieve.set_defaults(func=_retrieve)

    chat = commands.add_parser("chat", help="interleaved image/text dialogue that can bring back indexed images")
    chat.add_argument("model")
    chat.add_argument("--index", help="index whose images [RET] brings back")
    chat.add_argument("--ret-scale", type=float, default=1.0, help="multiplies the probability of [RET]")
    chat.add_argument("--min-words", type=int, default=0, help="words before [RET] may be emitted")
    chat.set_defaults(func=_chat)

    push = commands.add_parser("push", help="render the card and upload a release folder to the Hub")
    push.add_argument("model_dir")
    push.add_argument("--repo-id", required=True, help="ORG/NAME")
    push.add_argument("--light", action="store_true", help="upload only the trainable tensors")
    push.add_argument("--private", action="store_true")
    push.add_argument("--license", help="card licence (default: llama2 for LLaMA-2 towers, else apache-2.0)")
    push.add_argument("--dry-run", metavar="DIR", help="write exactly the folder that would be uploaded; upload nothing")
    push.set_defaults(func=_push)

    for register in _REGISTRARS:
        register(commands)
    return parser


# Later subcommands (train, eval, caption, ...) add themselves here from their own modules.
_REGISTRARS: list = []


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as error:  # bad input: one clear line, no traceback
        print(f"rscapret {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
