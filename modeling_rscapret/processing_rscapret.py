"""RS-CapRet processor: CLIP image processor + the LM's tokenizer with `[RET]` and `<image>` added.

This file is copied into every release folder (and so into the Hub repo): it imports only from `transformers`.
"""

import os

from tokenizers import AddedToken
from transformers import AutoConfig, AutoTokenizer, CLIPImageProcessor
from transformers.processing_utils import ProcessorMixin

# Interleaved dialogue, FROMAGe-style: a turn's images become `<image>` placeholders and its texts follow in order,
# separated by spaces; an assistant turn ends with the EOS token, as captions do in training. A message's content
# may be a string or a list of {"type": "image"} / {"type": "text", "text": ...} items.
DEFAULT_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if not loop.first %} {% endif -%}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}"
    "{%- for item in message['content'] -%}"
    "{%- if not loop.first %} {% endif -%}"
    "{%- if item['type'] == 'image' -%}<image>{%- elif item['type'] == 'text' -%}{{ item['text'] }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}{{ eos_token }}{%- endif -%}"
    "{%- endfor -%}"
)


class RSCapRetProcessor(ProcessorMixin):
    r"""
    Prepares images and text for [`RSCapRetForConditionalGeneration`].

    Args:
        image_processor (`CLIPImageProcessor`): resizes, crops and normalises images as the CLIP tower expects.
        tokenizer (`PreTrainedTokenizerBase`): the causal LM's tokenizer. `ret_token` and `image_token` are added as
            special tokens when missing (they get the ids right after the LM's vocabulary), and a missing pad
            token is set to the UNK (or EOS) token.
        chat_template (`str`, *optional*): Jinja template for interleaved image/text dialogue.
        num_visual_tokens (`int`, *optional*, defaults to 1): `<image>` placeholders per image (must match the
            model's `config.num_visual_tokens`).
        image_token (`str`, *optional*, defaults to `"<image>"`), ret_token (`str`, *optional*, defaults to `"[RET]"`).

    Call it as `processor(images=..., text=..., return_tensors="pt")`; each `<image>` in the text is expanded to
    `num_visual_tokens` placeholders. Padding is on the left, as batched generation needs.
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        chat_template=None,
        num_visual_tokens: int = 1,
        image_token: str = "<image>",
        ret_token: str = "[RET]",
        **kwargs,
    ):
        missing = [token for token in (ret_token, image_token) if token not in tokenizer.get_vocab()]
        if missing:
            tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in missing], special_tokens=True)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
        tokenizer.padding_side = "left"
        self.num_visual_tokens = num_visual_tokens
        self.image_token = image_token
        self.ret_token = ret_token
        self.image_token_id = tokenizer.convert_tokens_to_ids(image_token)
        self.ret_token_id = tokenizer.convert_tokens_to_ids(ret_token)
        super().__init__(image_processor, tokenizer, chat_template=chat_template or DEFAULT_CHAT_TEMPLATE, **kwargs)

    @classmethod
    def from_towers(
        cls, vision_model_name_or_path: str | os.PathLike, text_model_name_or_path: str | os.PathLike, **kwargs
    ) -> "RSCapRetProcessor":
        """Build the processor from the same two towers as `RSCapRetForConditionalGeneration.from_towers`."""
        image_processor = CLIPImageProcessor.from_pretrained(vision_model_name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(text_model_name_or_path)
        processor = cls(image_processor=image_processor, tokenizer=tokenizer, **kwargs)
        vocab_size = AutoConfig.from_pretrained(text_model_name_or_path).vocab_size
        if (processor.ret_token_id, processor.image_token_id) != (vocab_size, vocab_size + 1):
            raise ValueError(
                f"RSCapRetProcessor: {processor.ret_token} and {processor.image_token} got ids "
                f"{processor.ret_token_id} and {processor.image_token_id}, but the model expects {vocab_size} and "
                f"{vocab_size + 1} (right after the LM's vocab_size). The tokenizer of {text_model_name_or_path!r} "
                f"has {len(tokenizer)} tokens before them; pad it to vocab_size first."
            )
        return processor

    def replace_image_token(self, image_inputs: dict, image_idx: int, **kwargs) -> str:
        return self.image_token * self.num_visual_tokens

    def caption_prompt(self, prompt: str = "") -> str:
        """The text that asks for one image's caption: the placeholder, then an optional prompt."""
        return f"{self.image_token} {prompt}".rstrip() if prompt else self.image_token


__all__ = ["RSCapRetProcessor"]
