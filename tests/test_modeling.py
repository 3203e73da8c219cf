"""Foundation: config, model, processor, remote code and the two release forms."""

import json
import math
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from modeling_rscapret import (
    RSCapRetConfig,
    RSCapRetForConditionalGeneration,
    RSCapRetProcessor,
    rscapret_contrastive_loss,
)

CAPTIONS = ["<image>", "<image> a river passes", "<image> many cars"]
RET_CAPTIONS = ["a river", "many cars", "a beach"]


def _ret_text(processor, captions):
    return processor(text=[f"{c} {processor.ret_token}" for c in captions], return_tensors="pt", padding=True)


# ----------------------------------------------------------------------------------------------------- release forms
ROUNDTRIP_SCRIPT = textwrap.dedent(
    """
    import sys, json
    sys.modules["modeling_rscapret"] = None  # the package must not be importable: only the remote code may run
    try:
        import modeling_rscapret
        raise SystemExit("modeling_rscapret was importable")
    except ImportError:
        pass
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModel, AutoProcessor
    from PIL import Image
    import numpy as np
    out = {}
    rng = np.random.RandomState(0)
    images = [Image.fromarray((rng.rand(40, 48, 3) * 255).astype("uint8")) for _ in range(3)]
    for form in ("full", "light"):
        model = AutoModel.from_pretrained(sys.argv[1] + "/" + form, trust_remote_code=True)
        processor = AutoProcessor.from_pretrained(sys.argv[1] + "/" + form, trust_remote_code=True)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        batch = processor(images=images, text=json.loads(sys.argv[2]), return_tensors="pt", padding=True)
        ret = processor(text=[c + " [RET]" for c in json.loads(sys.argv[3])], return_tensors="pt", padding=True)
        with torch.no_grad():
            out[form + ".logits"] = model(**batch).logits
            out[form + ".image"] = model.get_image_features(pixel_values=batch["pixel_values"])
            out[form + ".text"] = model.get_text_features(**ret)
            out[form + ".generated"] = model.generate(**batch, max_new_tokens=8, do_sample=False)
    save_file({k: v.contiguous() for k, v in out.items()}, sys.argv[4])
    """
)


def test_full_and_light_round_trip_through_remote_code_only(model, processor, images, tmp_path):
    with torch.no_grad():  # make the trainable parts non-trivial so a lost tensor would show
        for name, tensor in model.trainable_state_dict().items():
            dict(model.named_parameters())[name].add_(torch.randn_like(tensor) * 0.05)
    for form in ("full", "light"):
        model.save_pretrained(tmp_path / form, light=form == "light")
        processor.save_pretrained(tmp_path / form)
    assert model.config.release_form == "full"  # saving light does not change the live model

    script = tmp_path / "roundtrip.py"
    script.write_text(ROUNDTRIP_SCRIPT)
    result_file = tmp_path / "out.safetensors"
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": ""}
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path), json.dumps(CAPTIONS), json.dumps(RET_CAPTIONS), str(result_file)],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    reloaded = load_file(result_file)

    batch = processor(images=images, text=CAPTIONS, return_tensors="pt", padding=True)
    ret = _ret_text(processor, RET_CAPTIONS)
    with torch.no_grad():
        expected = {
            "logits": model(**batch).logits,
            "image": model.get_image_features(pixel_values=batch["pixel_values"]),
            "text": model.get_text_features(**ret),
            "generated": model.generate(**batch, max_new_tokens=8, do_sample=False),
        }
    for form in ("full", "light"):
        for key, value in expected.items():
            if key == "logits":  # mmapped safetensors weights can take another SIMD path: 1-ulp differences
                torch.testing.assert_close(reloaded[f"{form}.{key}"], value, rtol=1e-6, atol=1e-6)
            else:
                assert torch.equal(reloaded[f"{form}.{key}"], value), f"{form} release differs in {key}"


def test_release_folders_hold_code_auto_map_and_only_trainables_when_light(model, processor, tmp_path):
    model.save_pretrained(tmp_path / "full")
    model.save_pretrained(tmp_path / "light", light=True)
    for form in ("full", "light"):
        config = json.loads((tmp_path / form / "config.json").read_text())
        assert config["auto_map"] == {
            "AutoConfig": "configuration_rscapret.RSCapRetConfig",
            "AutoModel": "modeling_rscapret.RSCapRetForConditionalGeneration",
            "AutoModelForImageTextToText": "modeling_rscapret.RSCapRetForConditionalGeneration",
        }
        assert config["release_form"] == form
        for code in ("configuration_rscapret.py", "modeling_rscapret.py", "processing_rscapret.py"):
            if code != "processing_rscapret.py":  # the processor's file comes with processor.save_pretrained
                imports = [l for l in (tmp_path / form / code).read_text().splitlines() if l.startswith(("from ", "import "))]
                assert not any("modeling_rscapret" in l or "training" in l for l in imports), imports
        assert not list((tmp_path / form).glob("*.bin")), "weights must be safetensors only"
    light = load_file(tmp_path / "light" / "model.safetensors")
    assert set(light) == set(model.trainable_state_dict())
    full = load_file(tmp_path / "full" / "model.safetensors")
    assert set(full) == set(model.state_dict())


def test_light_release_refuses_missing_base_ids(model, tmp_path):
    model.config.text_model_name_or_path = None
    with pytest.raises(ValueError, match="text_model_name_or_path"):
        model.save_pretrained(tmp_path / "light", light=True)
    assert not (tmp_path / "light" / "model.safetensors").exists()


# ------------------------------------------------------------------------------------------------ paper-scale count
def test_paper_scale_parameter_accounting_on_meta_device():
    config = RSCapRetConfig()  # CLIP ViT-L/14 + LLaMA-2-7B
    with torch.device("meta"):
        model = RSCapRetForConditionalGeneration(config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    d_v, h, r, n = 1024, 4096, 256, 1
    formula = (d_v * n * h + n * h) + (d_v * r + r) + (h * r + r) + 2 * h + 1
    assert trainable == formula == 5_517_825
    llama_2_7b = 6_738_415_616  # published parameter count of meta-llama/Llama-2-7b-hf
    assert sum(p.numel() for p in model.language_model.parameters()) == llama_2_7b
    assert frozen == llama_2_7b + sum(p.numel() for p in model.vision_tower.parameters())
    light_bytes = sum(t.numel() * 4 for t in model.trainable_state_dict().values())
    print(f"\npaper scale: trainable {trainable:,}  frozen {frozen:,}  light checkpoint {light_bytes / 1e6:.1f} MB (fp32)")
    assert light_bytes == 4 * formula


# ------------------------------------------------------------------------------------------------ frozen base weights
def test_optimizer_step_changes_every_trainable_tensor_and_no_base_weight(model, processor, images):
    model.train()
    base_before = {k: v.clone() for k, v in model.state_dict().items() if k not in model.trainable_state_dict()}
    trainable_before = {k: v.clone() for k, v in model.trainable_state_dict().items()}
    # Weight decay on every parameter: it must still leave frozen ones alone (they get no gradient).
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)

    caption = processor(images=images, text=[c + " a road" for c in CAPTIONS], return_tensors="pt", padding=True)
    caption_out = model(**caption, labels=caption["input_ids"].masked_fill(caption["attention_mask"] == 0, -100))
    ret = _ret_text(processor, RET_CAPTIONS)
    ret_out = model(**ret, labels=ret["input_ids"].masked_fill(ret["attention_mask"] == 0, -100),
                    pixel_values=caption["pixel_values"])
    loss_t2i, loss_i2t = rscapret_contrastive_loss(ret_out.logits_per_text)
    (caption_out.loss + ret_out.loss + loss_t2i + loss_i2t).backward()
    optimizer.step()

    for key, value in model.state_dict().items():
        if key in base_before:
            assert torch.equal(value, base_before[key]), f"frozen weight {key} changed"
        else:
            assert not torch.equal(value, trainable_before[key]), f"trainable tensor {key} did not change"
    assert set(trainable_before) == {n for n, p in model.named_parameters() if p.requires_grad}


# ---------------------------------------------------------------------------------------------------- generation
def test_generation_greedy_batched_equals_single_and_cache_equals_no_cache(model, processor, images):
    batch = processor(images=images, text=CAPTIONS, return_tensors="pt", padding=True)
    prompt_len = batch["input_ids"].shape[1]
    batched = model.generate(**batch, max_new_tokens=6, do_sample=False)
    assert torch.equal(batched, model.generate(**batch, max_new_tokens=6, do_sample=False, use_cache=False))
    for i, (image, text) in enumerate(zip(images, CAPTIONS)):
        single = processor(images=[image], text=[text], return_tensors="pt")
        alone = model.generate(**single, max_new_tokens=6, do_sample=False)
        assert alone[0, single["input_ids"].shape[1]:].tolist() == batched[i, prompt_len:].tolist()


def test_generation_beam_and_sampling(model, processor, images):
    batch = processor(images=images, text=CAPTIONS, return_tensors="pt", padding=True)
    beams = model.generate(**batch, max_new_tokens=5, num_beams=3, num_return_sequences=2)
    assert beams.shape[0] == 6
    torch.manual_seed(1)
    first = model.generate(**batch, max_new_tokens=5, do_sample=True, top_k=20)
    torch.manual_seed(1)
    assert torch.equal(first, model.generate(**batch, max_new_tokens=5, do_sample=True, top_k=20))


def test_model_can_emit_ret_when_its_output_row_makes_it_likely(model, processor, images):
    batch = processor(images=images[:1], text=["<image> a river"], return_tensors="pt")
    plain = model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert processor.ret_token_id not in plain[0].tolist()
    with torch.no_grad():
        hidden = model.language_model.base_model(
            inputs_embeds=model._merge_inputs(batch["input_ids"], model.get_vision_features(batch["pixel_values"]))
        ).last_hidden_state[0, -1]
        model.ret_output_embedding.copy_(hidden / hidden.norm() ** 2 * 1e3)  # [RET] logit = 1000 here
    generated = model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert generated[0, batch["input_ids"].shape[1]].item() == processor.ret_token_id
    assert processor.ret_token in processor.decode(generated[0])


# -------------------------------------------------------------------------------------------------- typed outputs
def test_forward_outputs_retrieval_embeddings_and_contrastive_logits(model, processor, images):
    ret = _ret_text(processor, RET_CAPTIONS)
    pixel_values = processor(images=images, return_tensors="pt")["pixel_values"]
    out = model(**ret, pixel_values=pixel_values)
    assert out.text_embeds.shape == out.image_embeds.shape == (3, model.config.retrieval_embed_dim)
    torch.testing.assert_close(out.text_embeds, model.get_text_features(**ret))
    torch.testing.assert_close(out.image_embeds, model.get_image_features(pixel_values=pixel_values))
    torch.testing.assert_close(out.text_embeds.norm(dim=-1), torch.ones(3))
    scale = math.exp(model.config.logit_scale_init)
    torch.testing.assert_close(out.logits_per_text, scale * out.text_embeds @ out.image_embeds.t())
    torch.testing.assert_close(out.logits_per_image, out.logits_per_text.t())
    assert out.logits.shape[-1] == model.config.text_config.vocab_size + 2


def test_precomputed_vision_features_equal_pixels(model, processor, images):
    batch = processor(images=images, text=CAPTIONS, return_tensors="pt", padding=True)
    features = model.get_vision_features(batch["pixel_values"])
    from_pixels = model(**batch).logits
    batch.pop("pixel_values")
    torch.testing.assert_close(model(**batch, vision_features=features).logits, from_pixels)


def test_more_visual_tokens_expand_the_placeholder(towers, images):
    model = RSCapRetForConditionalGeneration.from_towers(*towers, num_visual_tokens=3)
    processor = RSCapRetProcessor.from_towers(*towers, num_visual_tokens=3)
    batch = processor(images=images[:2], text=["<image> a", "<image> b"], return_tensors="pt", padding=True)
    assert (batch["input_ids"] == processor.image_token_id).sum().item() == 6
    assert model(**batch).logits.shape[:2] == batch["input_ids"].shape


def test_processor_chat_template_interleaves_images_and_text(processor):
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is this?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "a river"}]},
        {"role": "user", "content": [{"type": "text", "text": "show me a beach [RET]"}]},
    ]
    prompt = processor.apply_chat_template(messages, tokenize=False)
    assert prompt == f"<image> what is this? a river{processor.tokenizer.eos_token} show me a beach [RET]"


# ---------------------------------------------------------------------------------------------------- bad input
def test_image_count_mismatch_is_a_clear_error(model, processor, images):
    batch = processor(images=images[:2], text=["<image> a", "<image> b"], return_tensors="pt", padding=True)
    with pytest.raises(ValueError, match=r"2 <image> tokens but 3 images.*expected 1 <image> token\(s\) per image"):
        model(input_ids=batch["input_ids"], pixel_values=processor(images=images, return_tensors="pt")["pixel_values"])
    with pytest.raises(ValueError, match="<image>"):
        processor(images=images, text=["<image> a", "<image> b"])


def test_text_features_without_ret_is_a_clear_error(model, processor):
    text = processor(text=["a river [RET]", "no token here"], return_tensors="pt", padding=True)
    with pytest.raises(ValueError, match=r"must contain \[RET\].*rows \[1\]"):
        model.get_text_features(**text)


def test_config_disagreeing_with_tower_weights_is_a_clear_error(model, processor, tmp_path):
    model.save_pretrained(tmp_path / "light", light=True)
    model.save_pretrained(tmp_path / "full")
    for form in ("light", "full"):
        config_file = tmp_path / form / "config.json"
        config = json.loads(config_file.read_text())
        config["text_config"]["hidden_size"] = 32
        config_file.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"text_config.*hidden_size"):
        RSCapRetForConditionalGeneration.from_pretrained(tmp_path / "light")
    with pytest.raises(ValueError, match=r"does not match the saved weights.*language_model"):
        RSCapRetForConditionalGeneration.from_pretrained(tmp_path / "full")


def test_light_weights_file_with_foreign_tensors_is_refused(model, tmp_path):
    model.save_pretrained(tmp_path / "light", light=True)
    shutil.copy(tmp_path / "light" / "model.safetensors", tmp_path / "keep.safetensors")
    from safetensors.torch import save_file
    tensors = load_file(tmp_path / "keep.safetensors")
    tensors.pop("logit_scale")
    save_file(tensors, tmp_path / "light" / "model.safetensors")
    with pytest.raises(ValueError, match=r"missing \['logit_scale'\]"):
        RSCapRetForConditionalGeneration.from_pretrained(tmp_path / "light")


def test_config_rejects_bad_knobs():
    with pytest.raises(ValueError, match="num_visual_tokens"):
        RSCapRetConfig(num_visual_tokens=0)
    with pytest.raises(ValueError, match="ret_token_id"):
        RSCapRetConfig(ret_token_id=5)
    with pytest.raises(Exception, match="vision_feature"):
        RSCapRetConfig(vision_feature="cls")


def test_projected_vision_feature_uses_clip_image_embeds(towers, processor, images):
    model = RSCapRetForConditionalGeneration.from_towers(*towers, vision_feature="projected")
    pixel_values = processor(images=images, return_tensors="pt")["pixel_values"]
    features = model.get_vision_features(pixel_values)
    assert features.shape == (3, model.config.vision_config.projection_dim)
    torch.testing.assert_close(features, model.vision_tower(pixel_values=pixel_values).image_embeds)
