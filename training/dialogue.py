"""Interleaved image/text dialogue whose replies can bring back images, as in the paper's Fig. 3-4 and FROMAGe's
`generate_for_images_and_texts`, but through HF `generate` with the KV cache.

    chat = RSCapRetChat(model, processor, index=GalleryIndex.load("my-index"))
    turn = chat.send("what is in this scene?", images=["scene.tif"])
    turn = chat.send("show me a similar beach [RET]")     # turn.images: paths from the index

A reply ends at EOS or at `[RET]`. At `[RET]`, its hidden state (one more step through the KV cache) is projected
into the retrieval space and the index's best image not yet shown in this conversation is returned and added to
the conversation, which then goes on with it. Options as FROMAGe's: `ret_scale` multiplies the probability of
`[RET]` (its logit is raised by log(ret_scale)); `min_words_before_ret` forbids `[RET]` before that many words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from .gallery import GalleryIndex, SearchResult
from .images import load_rs_image


class RetTokenLogitsProcessor(LogitsProcessor):
    """Scales the probability of `[RET]` and forbids it before `min_words` generated words."""

    def __init__(self, ret_token_id: int, prompt_length: int, tokenizer, ret_scale: float = 1.0, min_words: int = 0):
        if ret_scale <= 0:
            raise ValueError(f"ret_scale must be > 0, got {ret_scale}.")
        self.ret_token_id, self.prompt_length, self.tokenizer = ret_token_id, prompt_length, tokenizer
        self.bias, self.min_words = math.log(ret_scale), min_words

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores[:, self.ret_token_id] += self.bias
        if self.min_words:
            for row in range(input_ids.shape[0]):
                text = self.tokenizer.decode(input_ids[row, self.prompt_length:], skip_special_tokens=True)
                if len(text.split()) < self.min_words:
                    scores[row, self.ret_token_id] = -math.inf
        return scores


@dataclass
class ChatTurn:
    text: str
    images: list[SearchResult] = field(default_factory=list)
    emitted_ret: bool = False


class RSCapRetChat:
    def __init__(self, model, processor, index: GalleryIndex | None = None, ret_scale: float = 1.0,
                 min_words_before_ret: int = 0, max_new_tokens: int = 32, images_per_ret: int = 1):
        if index is not None:
            index.check_model(model)
        self.model, self.processor, self.index = model, processor, index
        self.ret_scale, self.min_words, self.max_new_tokens = ret_scale, min_words_before_ret, max_new_tokens
        self.images_per_ret = images_per_ret
        self.reset()

    def reset(self) -> None:
        self.messages: list[dict] = []
        self.images: list = []  # PIL images, in the order of their <image> placeholders
        self.shown: set[str] = set()

    @torch.no_grad()
    def send(self, text: str | None = None, images: list | None = None) -> ChatTurn:
        images = [load_rs_image(i) if isinstance(i, (str, bytes)) or hasattr(i, "__fspath__") else i
                  for i in (images or [])]
        content = [{"type": "image"} for _ in images] + ([{"type": "text", "text": text}] if text else [])
        if not content:
            raise ValueError("RSCapRetChat.send: give a text, images, or both.")
        self.messages.append({"role": "user", "content": content})
        self.images += images

        prompt = self.processor.apply_chat_template(self.messages, tokenize=False)
        inputs = self.processor(images=self.images or None, text=[prompt], return_tensors="pt").to(self.model.device)
        prompt_length = inputs["input_ids"].shape[1]
        tokenizer = self.processor.tokenizer
        output = self.model.generate(
            **inputs, max_new_tokens=self.max_new_tokens, do_sample=False, return_dict_in_generate=True,
            eos_token_id=[tokenizer.eos_token_id, self.processor.ret_token_id], pad_token_id=tokenizer.pad_token_id,
            logits_processor=LogitsProcessorList([RetTokenLogitsProcessor(
                self.processor.ret_token_id, prompt_length, tokenizer, self.ret_scale, self.min_words)]),
        )
        new_tokens = output.sequences[0, prompt_length:]
        reply = tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
        emitted_ret = bool(len(new_tokens)) and new_tokens[-1].item() == self.processor.ret_token_id
        hits = self._retrieve(output, emitted_ret) if emitted_ret and self.index is not None else []

        assistant = [{"type": "text", "text": f"{reply} {self.processor.ret_token}".strip() if emitted_ret else reply}]
        assistant += [{"type": "image"} for _ in hits]
        self.messages.append({"role": "assistant", "content": assistant})
        self.images += [load_rs_image(hit.path) for hit in hits]
        self.shown.update(hit.path for hit in hits)
        return ChatTurn(reply, hits, emitted_ret)

    def _retrieve(self, output, emitted_ret) -> list[SearchResult]:
        # [RET] was sampled but not yet fed: one step through the KV cache gives its hidden state.
        sequence = output.sequences
        step = self.model(input_ids=sequence[:, -1:], past_key_values=output.past_key_values,
                          attention_mask=torch.ones_like(sequence), use_cache=True)
        return self.index.search(step.text_embeds.float().cpu().numpy(), self.images_per_ret, exclude=self.shown)[0]
