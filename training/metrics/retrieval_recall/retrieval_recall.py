"""Text->image and image->text Recall@K and their mean (mR), as an `evaluate` module and a plain function.

As the paper and RemoteCLIP compute them: a text query hits when its own image is among the top K images; an image
query hits when any of its captions is among the top K texts. Recalls are percentages. A tie counts against the
query (an equal score of another candidate ranks before the right one), so a constant similarity matrix scores
no better than chance would guarantee.
"""

import datasets
import evaluate
import numpy as np

KS = (1, 5, 10)

_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    similarity (`list[list[float]]` or array `(n_images, n_texts)`): score of every image against every text.
    text_to_image (`list[int]`): for each text (column), the index of its image (row).
    ks (`tuple[int]`, defaults to (1, 5, 10)).
Returns:
    {"t2i": {"R@1", "R@5", "R@10"}, "i2t": {...}, "mR": mean of the six recalls}
"""


def retrieval_recall(similarity, text_to_image, ks=KS) -> dict:
    similarity = np.asarray(similarity, dtype=np.float64)
    text_to_image = np.asarray(text_to_image, dtype=np.int64)
    if similarity.ndim != 2:
        raise ValueError(f"retrieval_recall: similarity must be (n_images, n_texts), got shape {similarity.shape}.")
    n_images, n_texts = similarity.shape
    if text_to_image.shape != (n_texts,):
        raise ValueError(f"retrieval_recall: text_to_image needs one image index per text ({n_texts}), "
                         f"got shape {text_to_image.shape}.")
    if n_texts and (text_to_image.min() < 0 or text_to_image.max() >= n_images):
        raise ValueError(f"retrieval_recall: text_to_image indices must lie in [0, {n_images}).")
    # rank of the right image for each text: how many images score >= it, itself excluded
    correct = similarity[text_to_image, np.arange(n_texts)]
    t2i_rank = (similarity >= correct[None, :]).sum(0) - 1
    # rank of the best of an image's captions, with ties against the query
    i2t_rank = np.full(n_images, np.iinfo(np.int64).max)
    for image in range(n_images):
        own = text_to_image == image
        if own.any():
            best = similarity[image, own].max()
            i2t_rank[image] = (similarity[image] >= best).sum() - 1 - (similarity[image, own] >= best).sum() + 1
    has_text = np.isin(np.arange(n_images), text_to_image)
    result = {
        "t2i": {f"R@{k}": float(100.0 * (t2i_rank < k).mean()) for k in ks},
        "i2t": {f"R@{k}": float(100.0 * (i2t_rank[has_text] < k).mean()) for k in ks},
    }
    result["mR"] = float(np.mean(list(result["t2i"].values()) + list(result["i2t"].values())))
    return result


class RetrievalRecall(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Liu et al., RemoteCLIP, 2024; Silva et al., RS-CapRet, 2024.",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "similarity": datasets.Sequence(datasets.Value("float64")),
                "text_to_image": datasets.Value("int64"),
            }),
        )

    def _compute(self, similarity, text_to_image, ks=KS):
        # evaluate batches rows per text: each "similarity" row is one text's scores against every image
        return retrieval_recall(np.asarray(similarity).T, text_to_image, ks)
