"""Inference benchmarks; every number is a ratio of two timings taken in this run (the machines are noisy).

(a) captioning tokens/s of RS-CapRet's `generate` / the bare LM's `generate` on the same prefix embeddings
    (target >= 0.95: the extra [RET] logit column and the prefix merge should cost next to nothing);
(b) dialogue decoding with the KV cache / a no-cache token-by-token loop (what FROMAGe does), 32 new tokens;
(c) exact retrieval over 1M random 256-d vectors: one query's scan GB/s / a measured memory-copy GB/s, and FAISS
    approximate (IVF) vs exact speed with its recall@10, on random and on clustered vectors.

    python bench/bench_inference.py [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import faiss
import numpy as np
import torch

from modeling_rscapret import RSCapRetForConditionalGeneration
from training.tiny_towers import TinyTowerSizes, build_tiny_clip, build_tiny_llama


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def paired_best(fn_a, fn_b, repeats: int) -> tuple[float, float]:
    """Best time of each, with the two runs interleaved so both see the same machine load."""
    times_a, times_b = [], []
    for _ in range(repeats):
        for fn, times in ((fn_a, times_a), (fn_b, times_b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return min(times_a), min(times_b)


def build_model(root: str, quick: bool) -> RSCapRetForConditionalGeneration:
    corpus = [f"scene {i} with {j} airplanes near the runway of the airport" for i in range(300) for j in range(3)]
    sizes = TinyTowerSizes(text_hidden=256 if quick else 512, text_layers=4 if quick else 8, text_heads=8,
                           vocab_size=2000, max_positions=512)
    return RSCapRetForConditionalGeneration.from_towers(build_tiny_clip(f"{root}/clip", corpus, sizes),
                                                        build_tiny_llama(f"{root}/llama", corpus, sizes)).eval()


@torch.no_grad()
def bench_captioning(model, batch: int, new_tokens: int, repeats: int) -> float:
    prompt = torch.full((batch, 6), 10)
    prompt[:, 0] = model.config.text_config.bos_token_id
    prompt[:, 1] = model.config.image_token_id
    features = torch.randn(batch, model.config.vision_feature_dim)
    mask = torch.ones_like(prompt)
    embeds = model._merge_inputs(prompt, features)
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
    ours, bare = paired_best(
        lambda: model.generate(input_ids=prompt, vision_features=features, attention_mask=mask, **kwargs),
        lambda: model.language_model.generate(inputs_embeds=embeds, attention_mask=mask, **kwargs), repeats)
    tokens = batch * new_tokens
    print(f"(a) captioning: RS-CapRet {tokens / ours:8.1f} tok/s, bare LM {tokens / bare:8.1f} tok/s "
          f"-> ratio {bare / ours:.3f} (target >= 0.95)")
    return bare / ours


@torch.no_grad()
def bench_dialogue(model, context: int, new_tokens: int, repeats: int) -> float:
    prompt = torch.randint(10, model.config.text_config.vocab_size, (1, context))
    prompt[0, 0] = model.config.text_config.bos_token_id
    prompt[0, 1] = model.config.image_token_id
    features = torch.randn(1, model.config.vision_feature_dim)

    def cached():
        model.generate(input_ids=prompt, vision_features=features, attention_mask=torch.ones_like(prompt),
                       max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)

    def uncached():  # FROMAGe's loop: the whole sequence through the model for every new token
        ids = prompt
        for _ in range(new_tokens):
            logits = model(input_ids=ids, vision_features=features, use_cache=False).logits[:, -1]
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)

    with_cache, without = paired_best(cached, uncached, repeats)
    print(f"(b) dialogue, {context}-token context, {new_tokens} new tokens: KV cache {with_cache * 1e3:.0f} ms, "
          f"no-cache loop {without * 1e3:.0f} ms -> speed-up {without / with_cache:.2f}x")
    return without / with_cache


def gallery_vectors(rng, n: int, dim: int, clustered: bool) -> np.ndarray:
    """Unit vectors: uniformly random (no neighbour structure, the worst case for approximate search) or drawn
    around 2,000 centres (as embeddings of real collections cluster by scene type)."""
    if clustered:
        centres = rng.standard_normal((2000, dim), dtype=np.float32)
        vectors = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.standard_normal((n, dim), dtype=np.float32)
    else:
        vectors = rng.standard_normal((n, dim), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def bench_retrieval(n: int, dim: int, queries: int, repeats: int, clustered: bool = False) -> None:
    rng = np.random.default_rng(0)
    vectors = gallery_vectors(rng, n, dim, clustered)
    query = vectors[rng.choice(n, queries, replace=False)] + 0.1 * rng.standard_normal((queries, dim), dtype=np.float32)
    scratch = np.empty_like(vectors)
    copy = best_of(lambda: np.copyto(scratch, vectors), repeats)
    copy_gbs = 2 * vectors.nbytes / copy / 1e9  # a copy reads and writes every byte

    exact = faiss.IndexFlatIP(dim)
    exact.add(vectors)
    one = best_of(lambda: exact.search(query[:1], 10), repeats)
    scan_gbs = vectors.nbytes / one / 1e9  # one query reads the whole gallery once
    print(f"(c) exact search over {n:,} x {dim} float32 {'clustered' if clustered else 'random'} vectors "
          f"({vectors.nbytes / 1e9:.2f} GB): one query {one * 1e3:.1f} ms "
          f"= {scan_gbs:.2f} GB/s; memory copy {copy_gbs:.2f} GB/s -> ratio {scan_gbs / copy_gbs:.2f}")
    batch = best_of(lambda: exact.search(query, 10), repeats)
    print(f"    exact, {queries} queries in one call (BLAS): {batch / queries * 1e3:.2f} ms per query")

    n_lists = int(4 * np.sqrt(n))
    approx = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, n_lists, faiss.METRIC_INNER_PRODUCT)
    start = time.perf_counter()
    approx.train(vectors[rng.choice(n, min(n, 40 * n_lists), replace=False)])
    approx.add(vectors)
    build = time.perf_counter() - start
    _, exact_ids = exact.search(query, 10)
    for nprobe in (8, 32):
        approx.nprobe = nprobe
        fast = best_of(lambda: approx.search(query, 10), repeats)
        _, approx_ids = approx.search(query, 10)
        recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx_ids, exact_ids)])
        print(f"    IVF{n_lists} (built in {build:.0f} s), nprobe {nprobe}: {fast / queries * 1e3:.2f} ms per query -> "
              f"{batch / fast:.1f}x faster than exact, recall@10 {recall:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller model and gallery")
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as root:
        model = build_model(root, args.quick)
        bench_captioning(model, batch=8, new_tokens=64, repeats=5 if args.quick else 9)
        bench_dialogue(model, context=128, new_tokens=32, repeats=2 if args.quick else 3)
    for clustered in (False, True):
        bench_retrieval(n=100_000 if args.quick else 1_000_000, dim=256, queries=64, repeats=3, clustered=clustered)


if __name__ == "__main__":
    main()
