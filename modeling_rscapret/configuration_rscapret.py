"""RS-CapRet model configuration.

This file is copied into every release folder (and so into the Hub repo): it imports only from
`transformers` and from files beside it.
"""

import math
from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec


@strict
class RSCapRetConfig(PreTrainedConfig):
    r"""
    Configuration of [`RSCapRetForConditionalGeneration`]: a frozen CLIP vision tower and a frozen causal LM joined
    by small trainable layers for captioning (a visual prefix) and retrieval (a `[RET]` token), as in RS-CapRet
    (Silva et al., 2024) and FROMAGe (Koh et al., 2023).

    The defaults describe the paper's model: CLIP ViT-L/14 (224 px) and LLaMA-2-7B.

    Args:
        vision_config (`dict` or `CLIPVisionConfig`, *optional*):
            Config of the CLIP vision tower. Defaults to CLIP ViT-L/14 shapes.
        text_config (`dict` or `PreTrainedConfig`, *optional*):
            Config of the causal LM (any `AutoModelForCausalLM` architecture). Defaults to LLaMA-2-7B shapes.
        num_visual_tokens (`int`, *optional*, defaults to 1):
            How many LM input positions one image occupies. The visual-prefix layer maps the image vector to
            `num_visual_tokens * text_config.hidden_size` values.
        vision_feature (`str`, *optional*, defaults to `"pooled"`):
            Which CLIP vector represents an image: `"pooled"` is the vision tower's pooler output (post-layernorm
            CLS, as FROMAGe uses); `"projected"` is CLIP's `image_embeds` (after `visual_projection`).
        retrieval_embed_dim (`int`, *optional*, defaults to 256):
            Size of the shared retrieval space.
        ret_token (`str`, *optional*, defaults to `"[RET]"`):
            The retrieval token appended to captions.
        image_token (`str`, *optional*, defaults to `"<image>"`):
            The placeholder replaced by the visual prefix.
        ret_token_id (`int`, *optional*):
            Id of `ret_token`. Defaults to `text_config.vocab_size`: the two new tokens are appended after the
            LM's vocabulary, so no base embedding matrix is resized.
        image_token_id (`int`, *optional*):
            Id of `image_token`. Defaults to `text_config.vocab_size + 1`.
        caption_loss_weight (`float`, *optional*, defaults to 1.0):
            λc, the weight of the captioning cross-entropy in the training loss.
        retrieval_loss_weight (`float`, *optional*, defaults to 1.0):
            λr, the weight of the contrastive loss (L_t2i + L_i2t).
        logit_scale_init (`float`, *optional*, defaults to log(1/0.07)):
            Initial value of the learnable log-temperature, as in CLIP.
        logit_scale_max (`float`, *optional*, defaults to log(100)):
            The log-temperature is clamped to this value when used, as in CLIP.
        vision_model_name_or_path (`str`, *optional*):
            Hub id or folder of the vision tower. A light release loads its frozen base from here.
        text_model_name_or_path (`str`, *optional*):
            Hub id or folder of the causal LM. A light release loads its frozen base from here.
        release_form (`str`, *optional*, defaults to `"full"`):
            `"full"`: the weights file holds every tensor. `"light"`: it holds only the trainable tensors, and the
            frozen towers are loaded from `vision_model_name_or_path` and `text_model_name_or_path`.

    Example:

    ```python
    >>> from modeling_rscapret import RSCapRetConfig
    >>> config = RSCapRetConfig()  # CLIP ViT-L/14 + LLaMA-2-7B shapes
    >>> config.ret_token_id, config.image_token_id
    (32000, 32001)
    ```
    """

    model_type = "rscapret"
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(
            config_class=AutoConfig,
            model_type="clip_vision_model",
            init_kwargs={  # openai/clip-vit-large-patch14
                "hidden_size": 1024,
                "intermediate_size": 4096,
                "projection_dim": 768,
                "num_hidden_layers": 24,
                "num_attention_heads": 16,
                "image_size": 224,
                "patch_size": 14,
            },
        ),
        "text_config": SubConfigSpec(
            config_class=AutoConfig,
            model_type="llama",
            init_kwargs={  # meta-llama/Llama-2-7b-hf
                "vocab_size": 32000,
                "hidden_size": 4096,
                "intermediate_size": 11008,
                "num_hidden_layers": 32,
                "num_attention_heads": 32,
                "num_key_value_heads": 32,
                "max_position_embeddings": 4096,
                "rms_norm_eps": 1e-5,
                "tie_word_embeddings": False,
            },
        ),
    }

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    num_visual_tokens: int = 1
    vision_feature: Literal["pooled", "projected"] = "pooled"
    retrieval_embed_dim: int = 256
    ret_token: str = "[RET]"
    image_token: str = "<image>"
    ret_token_id: int | None = None
    image_token_id: int | None = None
    caption_loss_weight: float = 1.0
    retrieval_loss_weight: float = 1.0
    logit_scale_init: float = math.log(1 / 0.07)
    logit_scale_max: float = math.log(100.0)
    vision_model_name_or_path: str | None = None
    text_model_name_or_path: str | None = None
    release_form: Literal["full", "light"] = "full"
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        vocab_size = self.text_config.vocab_size
        if self.ret_token_id is None:
            self.ret_token_id = vocab_size
        if self.image_token_id is None:
            self.image_token_id = vocab_size + 1
        if sorted((self.ret_token_id, self.image_token_id)) != [vocab_size, vocab_size + 1]:
            raise ValueError(
                f"RSCapRetConfig: `ret_token_id` ({self.ret_token_id}) and `image_token_id` ({self.image_token_id}) "
                f"must be the two ids right after the LM vocabulary (text_config.vocab_size={vocab_size}), "
                "so that no base embedding is resized."
            )
        if self.num_visual_tokens < 1:
            raise ValueError(f"RSCapRetConfig: `num_visual_tokens` must be >= 1, got {self.num_visual_tokens}.")
        if self.retrieval_embed_dim < 1:
            raise ValueError(f"RSCapRetConfig: `retrieval_embed_dim` must be >= 1, got {self.retrieval_embed_dim}.")
        if self.vision_feature not in ("pooled", "projected"):
            raise ValueError(
                f"RSCapRetConfig: `vision_feature` must be 'pooled' or 'projected', got {self.vision_feature!r}."
            )

    @property
    def vision_feature_dim(self) -> int:
        """Size of the image vector the trainable layers read (CLIP pooler output or `image_embeds`)."""
        if self.vision_feature == "pooled":
            return self.vision_config.hidden_size
        return self.vision_config.projection_dim

    @property
    def extended_vocab_size(self) -> int:
        """Size of the logits: the LM vocabulary plus `[RET]` and `<image>`."""
        return self.text_config.vocab_size + 2


__all__ = ["RSCapRetConfig"]
