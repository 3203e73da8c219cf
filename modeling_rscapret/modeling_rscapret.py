"""PyTorch RS-CapRet: captioning and retrieval of remote-sensing images with a frozen CLIP and a frozen causal LM.

Reads top to bottom: the output dataclass, the contrastive loss, the pretrained base, the model. This file is copied
into every release folder (and so into the Hub repo): it imports only from `transformers`, `torch`, `safetensors` and
the files beside it.
"""

import json
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    CLIPVisionModelWithProjection,
    GenerationMixin,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.cache_utils import Cache
from transformers.modeling_outputs import ModelOutput
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, cached_file

from .configuration_rscapret import RSCapRetConfig


@dataclass
class RSCapRetOutput(ModelOutput):
    r"""
    Output of [`RSCapRetForConditionalGeneration`].

    Args:
        loss (`torch.FloatTensor` of shape `(1,)`, *optional*, returned when `labels` is given):
            Next-token cross-entropy over the label positions (the captioning loss, or the `[RET]`-emission loss on
            retrieval sequences). The contrastive loss is not included: see [`rscapret_contrastive_loss`].
        logits (`torch.FloatTensor` of shape `(batch_size, sequence_length, text_config.vocab_size + 2)`):
            Next-token scores over the LM vocabulary plus `[RET]` and `<image>` (the latter always minimal).
        text_embeds (`torch.FloatTensor` of shape `(batch_size, retrieval_embed_dim)`, *optional*):
            L2-normalised retrieval embedding of each sequence's last `[RET]`; set when every row contains `[RET]`.
        image_embeds (`torch.FloatTensor` of shape `(num_images, retrieval_embed_dim)`, *optional*):
            L2-normalised retrieval embeddings of the images passed in; set when images are given.
        logits_per_text (`torch.FloatTensor` of shape `(batch_size, num_images)`, *optional*):
            `exp(logit_scale) * text_embeds @ image_embeds.T`; set when both embeddings are.
        logits_per_image (`torch.FloatTensor` of shape `(num_images, batch_size)`, *optional*):
            The transpose of `logits_per_text`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    past_key_values: Cache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    text_embeds: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    logits_per_image: torch.FloatTensor | None = None


def rscapret_contrastive_loss(logits_per_text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """InfoNCE in both directions for matched pairs on the diagonal: returns `(L_t2i, L_i2t)`.

    The paper's retrieval loss is their sum; each is returned so that training can log them separately.
    """
    if logits_per_text.ndim != 2 or logits_per_text.shape[0] != logits_per_text.shape[1]:
        raise ValueError(
            "rscapret_contrastive_loss expects a square (texts x images) matrix of matched pairs, got shape "
            f"{tuple(logits_per_text.shape)}."
        )
    targets = torch.arange(logits_per_text.shape[0], device=logits_per_text.device)
    loss_t2i = F.cross_entropy(logits_per_text, targets)
    loss_i2t = F.cross_entropy(logits_per_text.t(), targets)
    return loss_t2i, loss_i2t


class RSCapRetPreTrainedModel(PreTrainedModel):
    config: RSCapRetConfig
    config_class = RSCapRetConfig
    base_model_prefix = ""
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _skip_keys_device_placement = ["past_key_values"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True

    # Everything that trains; the light release holds exactly these tensors.
    _trainable_prefixes = (
        "visual_prefix_projection.",
        "image_retrieval_projection.",
        "text_retrieval_projection.",
        "ret_input_embedding",
        "ret_output_embedding",
        "logit_scale",
    )

    def _init_weights(self, module):
        std = getattr(self.config.text_config, "initializer_range", 0.02)
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, RSCapRetForConditionalGeneration):
            nn.init.normal_(module.ret_input_embedding, mean=0.0, std=std)
            nn.init.normal_(module.ret_output_embedding, mean=0.0, std=std)
            nn.init.constant_(module.logit_scale, self.config.logit_scale_init)


class RSCapRetForConditionalGeneration(RSCapRetPreTrainedModel, GenerationMixin):
    """RS-CapRet: a frozen CLIP vision tower, a frozen causal LM, and the small trainable layers that join them.

    Trainable: `visual_prefix_projection` (image vector -> `num_visual_tokens` LM input embeddings),
    `image_retrieval_projection`, `text_retrieval_projection` (hidden state at `[RET]` -> retrieval space),
    the `[RET]` input and output embedding rows, and `logit_scale`. The towers' own weights never change.
    """

    def __init__(
        self,
        config: RSCapRetConfig,
        vision_tower: CLIPVisionModelWithProjection | None = None,
        language_model: PreTrainedModel | None = None,
    ):
        super().__init__(config)
        # Pretrained towers can be passed in (see `from_towers`) so that a 7B LM is never built twice.
        self.vision_tower = vision_tower or CLIPVisionModelWithProjection._from_config(config.vision_config)
        self.language_model = language_model or AutoModelForCausalLM.from_config(config.text_config)
        self.vision_tower.requires_grad_(False)
        self.language_model.requires_grad_(False)

        hidden_size = config.text_config.hidden_size
        self.visual_prefix_projection = nn.Linear(config.vision_feature_dim, config.num_visual_tokens * hidden_size)
        self.image_retrieval_projection = nn.Linear(config.vision_feature_dim, config.retrieval_embed_dim)
        self.text_retrieval_projection = nn.Linear(hidden_size, config.retrieval_embed_dim)
        # The LM's own matrices are not resized: [RET] gets its own input row and lm_head row (LLaMA-2 does not tie
        # them), and <image> never needs a row since its positions are overwritten by the visual prefix.
        self.ret_input_embedding = nn.Parameter(torch.zeros(hidden_size))
        self.ret_output_embedding = nn.Parameter(torch.zeros(hidden_size))
        self.logit_scale = nn.Parameter(torch.tensor(config.logit_scale_init))
        # Read on every decoding step: plain ints, as config attribute access is slow in transformers 5.
        self._lm_vocab_size = config.text_config.vocab_size
        self._ret_token_id, self._image_token_id = config.ret_token_id, config.image_token_id
        self.post_init()

    # ----------------------------------------------------------------------------------------------- construction
    @classmethod
    def from_towers(
        cls,
        vision_model_name_or_path: str | os.PathLike,
        text_model_name_or_path: str | os.PathLike,
        *,
        config: RSCapRetConfig | None = None,
        dtype: torch.dtype | str | None = None,
        **config_overrides,
    ) -> "RSCapRetForConditionalGeneration":
        """Build RS-CapRet from a pretrained CLIP (full CLIP or vision-only checkpoint) and a pretrained causal LM.

        Both arguments take Hub ids (`"openai/clip-vit-large-patch14"`, `"meta-llama/Llama-2-7b-hf"`) or local
        folders. Nothing in the towers is resized. `config_overrides` set RS-CapRet knobs (e.g.
        `num_visual_tokens=2`); a given `config` must agree with the towers' shapes.
        """
        vision_path, text_path = _as_id(vision_model_name_or_path), _as_id(text_model_name_or_path)
        vision_tower = CLIPVisionModelWithProjection.from_pretrained(vision_path, dtype=dtype)
        language_model = AutoModelForCausalLM.from_pretrained(text_path, dtype=dtype)
        if config is None:
            config = cls.config_class(
                vision_config=vision_tower.config.to_dict(),
                text_config=language_model.config.to_dict(),
                vision_model_name_or_path=vision_path,
                text_model_name_or_path=text_path,
                **config_overrides,
            )
        else:
            if config_overrides:
                raise ValueError(f"from_towers: pass either `config` or overrides, not both ({sorted(config_overrides)}).")
            _check_tower_config("vision_config", config.vision_config, vision_tower.config, vision_path)
            _check_tower_config("text_config", config.text_config, language_model.config, text_path)
        model = cls(config, vision_tower=vision_tower, language_model=language_model)
        with torch.no_grad():
            # Start [RET] like HF's resize_token_embeddings starts new rows: at the mean of the existing ones.
            model.ret_input_embedding.copy_(language_model.get_input_embeddings().weight.float().mean(0))
            model.ret_output_embedding.copy_(language_model.get_output_embeddings().weight.float().mean(0))
        model.generation_config = language_model.generation_config
        return model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, config=None, **kwargs):
        """Load a full or a light release (the form is read from `config.release_form`)."""
        hub_kwargs = {k: kwargs[k] for k in _HUB_KWARGS if k in kwargs}
        # Not isinstance(config, RSCapRetConfig): as remote code, AutoConfig may hand in a twin class from another module.
        if not isinstance(config, PretrainedConfig):
            config = cls.config_class.from_pretrained(config or pretrained_model_name_or_path, **hub_kwargs)
        if config.release_form == "light":  # the towers first: their configs are cheap to read
            for key, name in (("vision_config", "vision_model_name_or_path"), ("text_config", "text_model_name_or_path")):
                if not getattr(config, name):
                    raise ValueError(f"{pretrained_model_name_or_path}: a light release needs `{name}` in config.json.")
                tower_config = AutoConfig.from_pretrained(getattr(config, name), **hub_kwargs)
                _check_tower_config(key, getattr(config, key), tower_config, getattr(config, name))
        checkpoint_shapes = _checkpoint_shapes(pretrained_model_name_or_path, hub_kwargs)
        _check_checkpoint_matches_config(cls, config, checkpoint_shapes, pretrained_model_name_or_path)
        if config.release_form != "light":
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, config=config, **kwargs)
        model = cls.from_towers(
            config.vision_model_name_or_path, config.text_model_name_or_path, config=config, dtype=kwargs.get("dtype")
        )
        weights_file = cached_file(pretrained_model_name_or_path, SAFE_WEIGHTS_NAME, **hub_kwargs)
        expected = set(model.trainable_state_dict())
        if set(checkpoint_shapes) != expected:
            raise ValueError(
                f"{weights_file}: a light release must hold exactly the trainable tensors {sorted(expected)}; "
                f"missing {sorted(expected - set(checkpoint_shapes))}, "
                f"unexpected {sorted(set(checkpoint_shapes) - expected)}."
            )
        model.load_state_dict(load_file(weights_file), strict=False)
        model.eval()
        return model

    def save_pretrained(self, save_directory, *args, light: bool = False, **kwargs):
        """Save a full release, or with `light=True` only the trainable tensors plus the towers' ids."""
        # One auto class per model class is kept by register_for_auto_class; the second entry is added here.
        auto_map = dict(getattr(self.config, "auto_map", None) or {})
        auto_map["AutoModelForImageTextToText"] = f"{_CODE_MODULE}.{type(self).__name__}"
        self.config.auto_map = auto_map
        if not light:
            self.config.release_form = "full"
            return super().save_pretrained(save_directory, *args, **kwargs)
        for key in ("vision_model_name_or_path", "text_model_name_or_path"):
            if not getattr(self.config, key):
                raise ValueError(f"save_pretrained(light=True): set `config.{key}` to the base model's Hub id first.")
        self.config.release_form = "light"
        try:
            return super().save_pretrained(save_directory, *args, state_dict=self.trainable_state_dict(), **kwargs)
        finally:
            self.config.release_form = "full"

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors that RS-CapRet trains (and that a light release holds)."""
        return {k: v for k, v in self.state_dict().items() if k.startswith(self._trainable_prefixes)}

    # ------------------------------------------------------------------------------------------- embedding hooks
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def get_vision_features(self, pixel_values: torch.FloatTensor) -> torch.FloatTensor:
        """The frozen CLIP image vector (`config.vision_feature`), shape `(num_images, vision_feature_dim)`.

        This is what feature caching stores: every other hook accepts it as `vision_features`.
        """
        pixel_values = pixel_values.to(self.vision_tower.dtype)
        if self.config.vision_feature == "projected":
            return self.vision_tower(pixel_values=pixel_values).image_embeds
        return self.vision_tower.vision_model(pixel_values=pixel_values).pooler_output

    def get_image_features(
        self, pixel_values: torch.FloatTensor | None = None, vision_features: torch.FloatTensor | None = None
    ) -> torch.FloatTensor:
        """L2-normalised retrieval-space image embeddings, shape `(num_images, retrieval_embed_dim)`."""
        vision_features = self._vision_features(pixel_values, vision_features)
        if vision_features is None:
            raise ValueError("get_image_features needs `pixel_values` or `vision_features`.")
        weight = self.image_retrieval_projection.weight
        return F.normalize(self.image_retrieval_projection(vision_features.to(weight.dtype)), dim=-1)

    def get_text_features(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        vision_features: torch.FloatTensor | None = None,
    ) -> torch.FloatTensor:
        """L2-normalised retrieval-space embedding of each row's last `[RET]`, shape `(batch, retrieval_embed_dim)`.

        Images may be given for `<image>` placeholders in the text (interleaved context before `[RET]`).
        """
        ret_positions = self._ret_positions(input_ids, strict=True)
        inputs_embeds = self._merge_inputs(input_ids, self._vision_features(pixel_values, vision_features))
        hidden_states = self.language_model.base_model(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False
        ).last_hidden_state
        return self._project_text(hidden_states, ret_positions)

    def get_visual_prefix(self, vision_features: torch.FloatTensor) -> torch.FloatTensor:
        """LM input embeddings for images, shape `(num_images, num_visual_tokens, hidden_size)`."""
        weight = self.visual_prefix_projection.weight
        prefix = self.visual_prefix_projection(vision_features.to(weight.dtype))
        return prefix.view(vision_features.shape[0], self.config.num_visual_tokens, -1)

    def embed_tokens(self, input_ids: torch.LongTensor) -> torch.FloatTensor:
        """LM input embeddings with the trainable `[RET]` row; `<image>` positions are left for the visual prefix."""
        extended = input_ids >= self._lm_vocab_size
        inputs_embeds = self.get_input_embeddings()(input_ids.masked_fill(extended, 0))
        is_ret = (input_ids == self._ret_token_id).unsqueeze(-1)
        return torch.where(is_ret, self.ret_input_embedding.to(inputs_embeds.dtype), inputs_embeds)

    def compute_logits(self, hidden_states: torch.FloatTensor) -> torch.FloatTensor:
        """LM logits extended by the `[RET]` column (trainable row) and the `<image>` column (never predicted)."""
        logits = self.get_output_embeddings()(hidden_states)
        ret_logit = (hidden_states @ self.ret_output_embedding.to(hidden_states.dtype)).to(logits.dtype)
        image_logit = torch.full_like(ret_logit, torch.finfo(logits.dtype).min)
        pair = (ret_logit, image_logit) if self._ret_token_id < self._image_token_id else (image_logit, ret_logit)
        return torch.cat([logits, torch.stack(pair, dim=-1)], dim=-1)

    # --------------------------------------------------------------------------------------------------- forward
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        vision_features: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> RSCapRetOutput:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(num_images, 3, H, W)`, *optional*):
            Images, in the order of the `<image>` placeholders in `input_ids`. If the text holds no placeholder, the
            images are only embedded for retrieval (as `CLIPModel` takes texts and images side by side).
        vision_features (`torch.FloatTensor` of shape `(num_images, vision_feature_dim)`, *optional*):
            Precomputed `get_vision_features(pixel_values)`, used in place of `pixel_values` (feature caching).
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Next-token targets, -100 where no loss is taken. Shifted inside, as in every HF causal LM.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("RSCapRet forward: pass exactly one of `input_ids` and `inputs_embeds`.")
        vision_features = self._vision_features(pixel_values, vision_features)
        if inputs_embeds is None:
            inputs_embeds = self._merge_inputs(input_ids, vision_features)

        outputs = self.language_model.base_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=use_cache,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        slice_indices = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.compute_logits(hidden_states[:, slice_indices, :])

        loss = None
        if labels is not None:
            loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.extended_vocab_size, **kwargs
            )

        text_embeds = image_embeds = logits_per_text = logits_per_image = None
        if input_ids is not None:
            ret_positions = self._ret_positions(input_ids, strict=False)
            if ret_positions is not None:
                text_embeds = self._project_text(hidden_states, ret_positions)
        if vision_features is not None:
            image_embeds = self.get_image_features(vision_features=vision_features)
        if text_embeds is not None and image_embeds is not None:
            logits_per_text = self.scaled_similarity(text_embeds, image_embeds)
            logits_per_image = logits_per_text.t()

        return RSCapRetOutput(
            loss=loss,
            logits=logits,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            text_embeds=text_embeds,
            image_embeds=image_embeds,
            logits_per_text=logits_per_text,
            logits_per_image=logits_per_image,
        )

    def scaled_similarity(self, text_embeds: torch.Tensor, image_embeds: torch.Tensor) -> torch.Tensor:
        """`exp(logit_scale) * text_embeds @ image_embeds.T`, with the log-temperature clamped as CLIP does."""
        scale = self.logit_scale.clamp(max=self.config.logit_scale_max).exp()
        return scale * text_embeds @ image_embeds.t()

    def prepare_inputs_for_generation(
        self,
        input_ids,
        past_key_values=None,
        attention_mask=None,
        inputs_embeds=None,
        vision_features=None,
        is_first_iteration=False,
        **kwargs,
    ):
        model_inputs = super().prepare_inputs_for_generation(
            input_ids,
            past_key_values=past_key_values,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            is_first_iteration=is_first_iteration,
            **kwargs,
        )
        # Like pixel_values, image features are consumed by the prefill step and live in the KV cache afterwards.
        if is_first_iteration or not kwargs.get("use_cache", True):
            model_inputs["vision_features"] = vision_features
        return model_inputs

    # ---------------------------------------------------------------------------------------------------- helpers
    def _vision_features(self, pixel_values, vision_features):
        if pixel_values is not None and vision_features is not None:
            raise ValueError("RSCapRet: pass `pixel_values` or `vision_features`, not both.")
        if pixel_values is not None:
            return self.get_vision_features(pixel_values)
        if vision_features is not None and vision_features.shape[-1] != self.config.vision_feature_dim:
            raise ValueError(
                f"RSCapRet: `vision_features` must have {self.config.vision_feature_dim} values per image "
                f"(vision_feature={self.config.vision_feature!r}), got shape {tuple(vision_features.shape)}."
            )
        return vision_features

    def _merge_inputs(self, input_ids, vision_features):
        """Token embeddings with the visual prefix scattered into the `<image>` positions (llava's pattern)."""
        inputs_embeds = self.embed_tokens(input_ids)
        image_mask = input_ids == self._image_token_id
        num_placeholders = int(image_mask.sum())
        if num_placeholders == 0:
            return inputs_embeds
        num_images = 0 if vision_features is None else vision_features.shape[0]
        expected = num_images * self.config.num_visual_tokens
        if num_placeholders != expected:
            raise ValueError(
                f"RSCapRet: the text holds {num_placeholders} {self.config.image_token} tokens but {num_images} images "
                f"were given; expected {self.config.num_visual_tokens} {self.config.image_token} token(s) per image "
                f"(num_visual_tokens), i.e. {expected}."
            )
        prefix = self.get_visual_prefix(vision_features).reshape(-1, inputs_embeds.shape[-1])
        return inputs_embeds.masked_scatter(image_mask.unsqueeze(-1), prefix.to(inputs_embeds.dtype))

    def _ret_positions(self, input_ids, strict):
        """Index of the last `[RET]` in every row, or None (strict: an error) if a row has none."""
        is_ret = input_ids == self._ret_token_id
        has_ret = is_ret.any(-1)
        if not bool(has_ret.all()):
            if strict:
                rows = (~has_ret).nonzero().flatten().tolist()
                raise ValueError(
                    f"RSCapRet get_text_features: every sequence must contain {self.config.ret_token} "
                    f"(id {self.config.ret_token_id}); rows {rows} have none. Append it to the caption."
                )
            return None
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        return positions.masked_fill(~is_ret, -1).amax(-1)

    def _project_text(self, hidden_states, ret_positions):
        rows = torch.arange(hidden_states.shape[0], device=hidden_states.device)
        ret_hidden = hidden_states[rows, ret_positions]
        weight = self.text_retrieval_projection.weight
        return F.normalize(self.text_retrieval_projection(ret_hidden.to(weight.dtype)), dim=-1)


_CODE_MODULE = __name__.rsplit(".", 1)[-1]
_HUB_KWARGS = ("cache_dir", "force_download", "proxies", "token", "revision", "local_files_only", "subfolder")

# Shape fields that must agree between an RS-CapRet config and the towers it is loaded with.
_TOWER_FIELDS = {
    "vision_config": ("hidden_size", "projection_dim", "num_hidden_layers", "image_size", "patch_size"),
    "text_config": ("model_type", "vocab_size", "hidden_size", "num_hidden_layers"),
}


def _as_id(name_or_path) -> str:
    """Hub ids stay as they are; local folders become absolute so a saved config still finds them."""
    name_or_path = os.fspath(name_or_path)
    return os.path.abspath(name_or_path) if os.path.isdir(name_or_path) else name_or_path


def _checkpoint_shapes(name_or_path, hub_kwargs) -> dict[str, list[int]]:
    """Tensor shapes of a safetensors checkpoint (single file or sharded), read from the headers only."""
    single = cached_file(name_or_path, SAFE_WEIGHTS_NAME, _raise_exceptions_for_missing_entries=False, **hub_kwargs)
    if single is not None:
        files = [single]
    else:
        index_file = cached_file(name_or_path, SAFE_WEIGHTS_INDEX_NAME, **hub_kwargs)
        with open(index_file) as f:
            shard_names = sorted(set(json.load(f)["weight_map"].values()))
        files = [cached_file(name_or_path, shard, **hub_kwargs) for shard in shard_names]
    shapes = {}
    for file in files:
        with safe_open(file, framework="pt") as f:
            shapes.update({key: f.get_slice(key).get_shape() for key in f.keys()})
    return shapes


def _check_checkpoint_matches_config(model_class, config, checkpoint_shapes, name_or_path):
    """A clear error, before any weight is read, when config.json does not describe the saved tensors."""
    with torch.device("meta"):
        reference = model_class(config)
    expected = {k: list(v.shape) for k, v in reference.state_dict().items()}
    mismatched = [k for k, shape in checkpoint_shapes.items() if k in expected and list(shape) != expected[k]]
    if mismatched:
        details = "; ".join(f"`{k}` is {list(checkpoint_shapes[k])}, config expects {expected[k]}" for k in mismatched[:3])
        raise ValueError(
            f"{name_or_path}: config.json (vision_config / text_config / RS-CapRet fields) does not match the saved "
            f"weights in {len(mismatched)} tensor(s): {details}."
        )


def _check_tower_config(key, expected_config, tower_config, tower_path):
    tower_config = getattr(tower_config, key, tower_config)  # a full CLIP config holds its vision_config
    for field in _TOWER_FIELDS[key]:
        expected, found = getattr(expected_config, field, None), getattr(tower_config, field, None)
        if expected != found:
            raise ValueError(
                f"RSCapRet config `{key}.{field}` is {expected!r} but the tower at {tower_path!r} has {found!r}: "
                "the config does not describe these weights."
            )


__all__ = ["RSCapRetForConditionalGeneration", "RSCapRetPreTrainedModel", "RSCapRetOutput", "rscapret_contrastive_loss"]
