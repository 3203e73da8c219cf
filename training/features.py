"""Feature caching: the vision tower is frozen, so each image's CLIP vector is computed once per data set.

`datasets.map` stores the vectors in the Arrow cache beside the data set, keyed by the data set's fingerprint and
a hash of the vision tower's weights: a second run (or a second epoch) never runs the tower, and a different tower
never reuses stale vectors.
"""

from __future__ import annotations

import hashlib

import torch
from datasets import Dataset, DatasetDict

VISION_FEATURES = "vision_features"


def vision_fingerprint(model) -> str:
    """A hash of what determines the cached vectors: the tower's weights and `config.vision_feature`."""
    digest = hashlib.sha256(model.config.vision_feature.encode())
    for name, tensor in sorted(model.vision_tower.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def add_vision_features(data: Dataset | DatasetDict, model, processor, batch_size: int = 64):
    """Add a `vision_features` column (the model's `get_vision_features` of each image) to every split."""
    fingerprint = vision_fingerprint(model)
    if isinstance(data, DatasetDict):
        return DatasetDict({split: _add(ds, model, processor, batch_size, fingerprint) for split, ds in data.items()})
    return _add(data, model, processor, batch_size, fingerprint)


def _add(dataset: Dataset, model, processor, batch_size: int, fingerprint: str) -> Dataset:
    if len(dataset) == 0:
        return dataset

    def embed(batch):
        pixel_values = processor.image_processor(batch["image"], return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            features = model.get_vision_features(pixel_values.to(model.device))
        return {VISION_FEATURES: features.float().cpu().numpy()}

    new_fingerprint = hashlib.sha256(f"{dataset._fingerprint}-{fingerprint}".encode()).hexdigest()[:16]
    return dataset.map(embed, batched=True, batch_size=batch_size, new_fingerprint=new_fingerprint,
                       desc="caching CLIP features")
