"""Shared fixtures: tiny towers saved as ordinary pretrained folders, and an RS-CapRet built from them."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from modeling_rscapret import RSCapRetForConditionalGeneration, RSCapRetProcessor  # noqa: E402
from training.tiny_towers import build_tiny_clip, build_tiny_llama  # noqa: E402


@pytest.fixture(scope="session")
def towers(tmp_path_factory):
    root = tmp_path_factory.mktemp("towers")
    return build_tiny_clip(root / "clip"), build_tiny_llama(root / "llama")


@pytest.fixture()
def model(towers):
    torch.manual_seed(0)
    return RSCapRetForConditionalGeneration.from_towers(*towers).eval()


@pytest.fixture(scope="session")
def processor(towers):
    return RSCapRetProcessor.from_towers(*towers)


def random_images(n, seed=0, size=(40, 48)):
    rng = np.random.RandomState(seed)
    return [Image.fromarray((rng.rand(size[0], size[1], 3) * 255).astype("uint8")) for _ in range(n)]


@pytest.fixture()
def images():
    return random_images(3)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The real `rscapret demo` pipeline on a smaller generated set (720 images), run once per test session."""
    from training.demo import DemoSettings, run_demo

    out = tmp_path_factory.mktemp("demo")
    report = run_demo(out, DemoSettings(n_images=720, seed=0))
    return out, report
