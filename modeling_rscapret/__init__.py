"""RS-CapRet for 🤗 transformers: captioning and retrieval of remote-sensing images (Silva et al., 2024).

Importing this package registers the three classes with the Auto API, so `save_pretrained` writes `auto_map`
and copies `configuration_rscapret.py`, `modeling_rscapret.py` and `processing_rscapret.py` into the folder.
"""

from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText, AutoProcessor

from .configuration_rscapret import RSCapRetConfig
from .modeling_rscapret import (
    RSCapRetForConditionalGeneration,
    RSCapRetOutput,
    RSCapRetPreTrainedModel,
    rscapret_contrastive_loss,
)
from .processing_rscapret import RSCapRetProcessor

# In-process use (no trust_remote_code needed when this package is installed).
AutoConfig.register("rscapret", RSCapRetConfig, exist_ok=True)
AutoModel.register(RSCapRetConfig, RSCapRetForConditionalGeneration, exist_ok=True)
AutoModelForImageTextToText.register(RSCapRetConfig, RSCapRetForConditionalGeneration, exist_ok=True)
AutoProcessor.register(RSCapRetConfig, RSCapRetProcessor, exist_ok=True)

# Remote code: `save_pretrained` writes auto_map and copies the code files. One auto class is kept per model class
# (the last call wins), so the second model entry is added to auto_map by the config (see configuration file).
RSCapRetConfig.register_for_auto_class()
RSCapRetForConditionalGeneration.register_for_auto_class("AutoModel")
RSCapRetProcessor.register_for_auto_class()

__all__ = [
    "RSCapRetConfig",
    "RSCapRetForConditionalGeneration",
    "RSCapRetOutput",
    "RSCapRetPreTrainedModel",
    "RSCapRetProcessor",
    "rscapret_contrastive_loss",
]
