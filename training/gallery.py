"""A retrieval index over a user's image collection: `rscapret index MODEL IMAGE_DIR --out INDEX`.

INDEX is a folder:
- `embeddings.safetensors`: the retrieval-space vectors (float32, L2-normalised), one row per image;
- `index.json`: the images' paths, the vector size and the model's identity (a hash of everything that shapes the
  image vectors), so a query with another model is refused instead of returning nonsense;
- `faiss.index`: a FAISS index over the vectors (exact `IndexFlatIP` by default, or HNSW / IVF when asked).

Images are embedded once: adding a folder embeds only the new files. Every file is written to a temporary name
and moved into place, so an interrupted or failing run never leaves a half-written index.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .features import vision_fingerprint
from .images import ImageDecodeError, load_rs_image
from .run_eval import _batches, embed_images

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".webp")
INDEX_KINDS = ("flat", "hnsw", "ivf")


def model_identity(model) -> str:
    """Hash of the vision tower, `vision_feature` and the image projection: what the stored vectors depend on."""
    digest = hashlib.sha256(vision_fingerprint(model).encode())
    for name, tensor in sorted(model.image_retrieval_projection.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def find_images(folder) -> list[str]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder of images.")
    paths = sorted(str(p.resolve()) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise ValueError(f"{folder}: no images found (looked for {', '.join(IMAGE_SUFFIXES)}).")
    return paths


def embed_image_files(model, processor, paths: list[str], batch_size: int = 32) -> torch.Tensor:
    """Decode (RS rule) and embed image files, a batch at a time; an unreadable file is an error naming it."""
    parts = []
    for chunk in _batches(paths, batch_size, "embedding image files"):
        images = []
        for path in chunk:
            try:
                images.append(load_rs_image(path))
            except ImageDecodeError as error:
                raise ValueError(f"cannot index {path}: {error}") from error
        parts.append(embed_images(model, processor, images, batch_size=len(images)))
    return torch.cat(parts)


@dataclass
class SearchResult:
    path: str
    score: float


class GalleryIndex:
    """Image vectors + paths + model identity, with a FAISS index for search."""

    def __init__(self, vectors: np.ndarray, paths: list[str], identity: str, model_name: str, kind: str = "flat"):
        if kind not in INDEX_KINDS:
            raise ValueError(f"index kind must be one of {INDEX_KINDS}, got {kind!r}.")
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.paths, self.identity, self.model_name, self.kind = list(paths), identity, model_name, kind
        self.faiss_index = self._build_faiss()

    # ------------------------------------------------------------------------------------------- build / save
    @classmethod
    def build(cls, model, processor, folder, kind: str = "flat", batch_size: int = 32) -> "GalleryIndex":
        paths = find_images(folder)
        vectors = embed_image_files(model, processor, paths, batch_size).numpy()
        return cls(vectors, paths, model_identity(model), str(model.config._name_or_path), kind)

    def add_folder(self, model, processor, folder, batch_size: int = 32) -> int:
        """Embed the folder's images that are not in the index yet; returns how many were added."""
        self.check_model(model)
        known = set(self.paths)
        new = [p for p in find_images(folder) if p not in known]
        if new:
            vectors = embed_image_files(model, processor, new, batch_size).numpy()
            self.vectors = np.concatenate([self.vectors, vectors])
            self.paths += new
            self.faiss_index = self._build_faiss() if self.kind == "ivf" else self._extend_faiss(vectors)
        return len(new)

    def save(self, directory) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"paths": self.paths, "model_identity": self.identity, "model": self.model_name, "kind": self.kind,
                "dim": int(self.vectors.shape[1]), "count": len(self.paths), "format": 1}
        writes = {
            "embeddings.safetensors": lambda p: save_file({"vectors": torch.from_numpy(self.vectors)}, p),
            "faiss.index": lambda p: faiss.write_index(self.faiss_index, p),
            "index.json": lambda p: Path(p).write_text(json.dumps(meta, indent=1)),
        }
        for name, write in writes.items():  # all three are written before any replaces the old one
            write(str(directory / f".{name}.tmp"))
        for name in writes:
            os.replace(directory / f".{name}.tmp", directory / name)
        return directory

    @classmethod
    def load(cls, directory) -> "GalleryIndex":
        directory = Path(directory)
        meta_file = directory / "index.json"
        if not meta_file.is_file():
            raise FileNotFoundError(f"{directory}: not an rs-capret index (no index.json).")
        meta = json.loads(meta_file.read_text())
        vectors = load_file(directory / "embeddings.safetensors")["vectors"].numpy()
        if vectors.shape != (meta["count"], meta["dim"]) or len(meta["paths"]) != meta["count"]:
            raise ValueError(f"{directory}: embeddings.safetensors holds {vectors.shape}, index.json says "
                             f"{meta['count']} x {meta['dim']}: the index is inconsistent; rebuild it.")
        index = cls.__new__(cls)
        index.vectors, index.paths = vectors, meta["paths"]
        index.identity, index.model_name, index.kind = meta["model_identity"], meta["model"], meta["kind"]
        index.faiss_index = faiss.read_index(str(directory / "faiss.index"))
        return index

    # ------------------------------------------------------------------------------------------------ search
    def check_model(self, model) -> None:
        identity = model_identity(model)
        if identity != self.identity:
            raise ValueError(
                f"this index was built with another model ({self.model_name}, identity {self.identity}); the given "
                f"model has identity {identity}. Its vectors live in a different space: rebuild the index with "
                "`rscapret index` for this model."
            )

    def search(self, queries: np.ndarray, k: int, exclude: set[str] | None = None) -> list[list[SearchResult]]:
        """Top-k images per query vector (rows L2-normalised). `exclude` paths are skipped (k still returned)."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        exclude = exclude or set()
        fetch = min(len(self.paths), k + len(exclude))
        scores, ids = self.faiss_index.search(queries, fetch)
        results = []
        for row_scores, row_ids in zip(scores, ids):
            hits = [SearchResult(self.paths[i], float(s)) for s, i in zip(row_scores, row_ids)
                    if i >= 0 and self.paths[i] not in exclude]
            results.append(hits[:k])
        return results

    def __len__(self) -> int:
        return len(self.paths)

    # ---------------------------------------------------------------------------------------------- internals
    def _build_faiss(self):
        dim = self.vectors.shape[1]
        if self.kind == "flat":
            index = faiss.IndexFlatIP(dim)
        elif self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        else:
            n_lists = max(1, min(4096, int(np.sqrt(len(self.vectors)))))
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, n_lists, faiss.METRIC_INNER_PRODUCT)
            index.train(self.vectors)
            index.nprobe = min(n_lists, 16)
        index.add(self.vectors)
        return index

    def _extend_faiss(self, vectors):
        self.faiss_index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return self.faiss_index
