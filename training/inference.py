"""Inference helpers behind `rscapret caption`, `rscapret retrieve` and the dialogue API."""

from __future__ import annotations

import textwrap
from pathlib import Path

from PIL import Image, ImageDraw

from .gallery import IMAGE_SUFFIXES, GalleryIndex, SearchResult, embed_image_files
from .images import load_rs_image
from .run_eval import embed_texts, generate_captions


def load_model(name_or_path):
    """A release folder or Hub id, loaded exactly as a user loads it."""
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(name_or_path, trust_remote_code=True).eval()
    return model, AutoProcessor.from_pretrained(name_or_path, trust_remote_code=True)


def expand_image_args(items) -> list[str]:
    """Files stay as they are; folders contribute their images (sorted, recursive)."""
    paths = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ValueError(f"{path}: no images found.")
            paths += found
        elif path.is_file():
            paths.append(str(path))
        else:
            raise FileNotFoundError(f"{path}: no such image or folder.")
    return paths


def caption_files(model, processor, paths, prompt: str = "", batch_size: int = 16, **generate_kwargs) -> list[str]:
    """Captions of image files (any RS format `load_rs_image` decodes), batched through `generate`."""
    images = [load_rs_image(p) for p in paths]
    return generate_captions(model, processor, images, batch_size=batch_size, prompt=prompt, **generate_kwargs)


def retrieve(model, processor, index: GalleryIndex, query: str | None = None, image: str | None = None,
             k: int = 5) -> tuple[list[SearchResult], str | None]:
    """Text->image (via [RET]) or image->image search; returns the hits and a note when k had to shrink."""
    if (query is None) == (image is None):
        raise ValueError("retrieve: give a text query or an image, not both.")
    if k < 1:
        raise ValueError(f"retrieve: k must be >= 1, got {k}.")
    index.check_model(model)
    note = None
    if k > len(index):
        note = f"k={k} but the index holds {len(index)} images: returning all {len(index)}."
        k = len(index)
    vector = (embed_texts(model, processor, [query]) if query is not None
              else embed_image_files(model, processor, [image]))
    return index.search(vector.numpy(), k)[0], note


def render_retrieval_grid(hits: list[SearchResult], out_path, query: str | None = None, image: str | None = None,
                          tile: int = 160) -> str:
    """The query (text or image) and its top-k images with their scores, as one PNG."""
    columns = len(hits) + 1
    canvas = Image.new("RGB", (columns * (tile + 8) + 8, tile + 48), "white")
    draw = ImageDraw.Draw(canvas)
    if image is not None:
        canvas.paste(load_rs_image(image).resize((tile, tile)), (8, 8))
        draw.text((8, tile + 14), "query image", fill="black")
    else:
        lines = textwrap.wrap(query or "", width=max(8, tile // 7))
        draw.rectangle([8, 8, 8 + tile, 8 + tile], outline="black")
        for row, line in enumerate(lines[:10]):
            draw.text((14, 14 + 14 * row), line, fill="black")
        draw.text((8, tile + 14), "text query", fill="black")
    for column, hit in enumerate(hits, start=1):
        x = 8 + column * (tile + 8)
        canvas.paste(load_rs_image(hit.path).resize((tile, tile)), (x, 8))
        draw.text((x, tile + 14), f"#{column}  {hit.score:.3f}", fill="black")
        draw.text((x, tile + 28), Path(hit.path).name[:26], fill="black")
    canvas.save(out_path)
    return str(out_path)
