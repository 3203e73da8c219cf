"""Tiny CLIP and tiny LLaMA towers built from configs and saved as ordinary pretrained folders.

Tests and the demo load them through the same `from_pretrained` paths a user's real Hub ids take. The tokenizers
are trained here with the `tokenizers` library: nothing is downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

# Llama's special tokens, in Llama's order (<unk>=0, <s>=1, </s>=2).
LLAMA_SPECIAL_TOKENS = ("<unk>", "<s>", "</s>")
# CLIP's, with <|endoftext|> away from id 2: CLIP's text pooling treats eos_token_id == 2 as a legacy config.
CLIP_SPECIAL_TOKENS = ("<unk>", "<pad>", "<|startoftext|>", "<|endoftext|>")

FALLBACK_CORPUS = (
    "many buildings and green trees are around a playground",
    "a river passes through the farmland with some roads",
    "several airplanes are parked near the terminal of an airport",
    "a white beach lies between the blue sea and the green forest",
    "many cars are parked in the parking lot beside a building",
    "a baseball field is surrounded by green trees and houses",
)


@dataclass
class TinyTowerSizes:
    """Shapes of the tiny towers; defaults keep a forward pass at a few milliseconds on CPU."""

    image_size: int = 32
    patch_size: int = 8
    vision_hidden: int = 32
    vision_layers: int = 2
    projection_dim: int = 24
    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 4
    vocab_size: int = 400
    max_positions: int = 256


def train_bpe_tokenizer(
    corpus: Iterable[str], vocab_size: int, special_tokens: tuple[str, ...], bos: str, eos: str | None
) -> PreTrainedTokenizerFast:
    """A SentencePiece-style (metaspace) BPE tokenizer trained on `corpus`, adding `bos` (and `eos`) around text."""
    tokenizer = Tokenizer(models.BPE(unk_token=special_tokens[0]))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special_tokens), show_progress=False)
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    single = f"{bos} $A" + (f" {eos}" if eos else "")
    special = [(bos, tokenizer.token_to_id(bos))] + ([(eos, tokenizer.token_to_id(eos))] if eos else [])
    tokenizer.post_processor = processors.TemplateProcessing(single=single, special_tokens=special)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token=special_tokens[0], bos_token=bos, eos_token=eos or special_tokens[-1]
    )


def build_tiny_llama(
    out_dir: str | os.PathLike, corpus: Iterable[str] = FALLBACK_CORPUS, sizes: TinyTowerSizes | None = None, seed: int = 0
) -> str:
    """Save a randomly initialised tiny LLaMA (untied lm_head, as LLaMA-2) and its tokenizer to `out_dir`."""
    sizes = sizes or TinyTowerSizes()
    corpus = list(corpus)
    tokenizer = train_bpe_tokenizer(corpus, sizes.vocab_size, LLAMA_SPECIAL_TOKENS, bos="<s>", eos=None)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=sizes.text_hidden,
        intermediate_size=2 * sizes.text_hidden,
        num_hidden_layers=sizes.text_layers,
        num_attention_heads=sizes.text_heads,
        num_key_value_heads=sizes.text_heads,
        max_position_embeddings=sizes.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.unk_token_id
    )
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return os.fspath(out_dir)


def build_tiny_clip(
    out_dir: str | os.PathLike, corpus: Iterable[str] = FALLBACK_CORPUS, sizes: TinyTowerSizes | None = None, seed: int = 0
) -> str:
    """Save a randomly initialised tiny full CLIP (both towers, as `openai/clip-vit-*` folders hold) to `out_dir`."""
    sizes = sizes or TinyTowerSizes()
    tokenizer = train_bpe_tokenizer(list(corpus), sizes.vocab_size, CLIP_SPECIAL_TOKENS, "<|startoftext|>", "<|endoftext|>")
    tokenizer.pad_token = "<pad>"
    config = CLIPConfig(
        vision_config=dict(
            hidden_size=sizes.vision_hidden,
            intermediate_size=2 * sizes.vision_hidden,
            num_hidden_layers=sizes.vision_layers,
            num_attention_heads=4,
            image_size=sizes.image_size,
            patch_size=sizes.patch_size,
            projection_dim=sizes.projection_dim,
        ),
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=sizes.vision_hidden,
            intermediate_size=2 * sizes.vision_hidden,
            num_hidden_layers=sizes.vision_layers,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=sizes.projection_dim,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        projection_dim=sizes.projection_dim,
    )
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(out_dir)
    CLIPImageProcessor(
        size={"shortest_edge": sizes.image_size}, crop_size={"height": sizes.image_size, "width": sizes.image_size}
    ).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return os.fspath(out_dir)
