"""Model-card and data-set-card templates (Markdown with YAML front matter), rendered by `training.hub`."""

from pathlib import Path

MODEL_CARD_TEMPLATE = Path(__file__).with_name("model_card.md")
DATASET_CARD_TEMPLATE = Path(__file__).with_name("dataset_card.md")
