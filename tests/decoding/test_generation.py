"""The generation layer's pipeline with tiny random-weight components (no mocks)."""

import json

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DiffusionPipeline

from decoding.generation import (
    EmbeddingConditioner,
    StimulusAutoencoder,
    StimulusDiffusionPipeline,
    check_conditioning,
    load_pipeline,
    make_scheduler,
    make_unet,
)
from decoding.generation.diffusion import training_scheduler

DI, DT = 16, 8


def _tiny(seed=0):
    torch.manual_seed(seed)
    vae = StimulusAutoencoder(block_out_channels=(8, 8, 16))
    cond = EmbeddingConditioner(DI, DT, "img-features-a", "text-a")
    with torch.no_grad():
        cond.null_image.normal_()
        cond.null_text.normal_()
    unet = make_unet(cond.cond_dim, block_out_channels=(8, 16), layers_per_block=1)
    sched = make_scheduler("dpmsolver++", training_scheduler().config)
    pipe = StimulusDiffusionPipeline(vae=vae, unet=unet, scheduler=sched, conditioner=cond)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe():
    return _tiny()


def _emb(n, d, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_call_shapes_range_and_seed(pipe):
    e, t = _emb(3, DI), _emb(3, DT, 1)
    out = pipe(e, t, num_inference_steps=3, generator=0).images
    assert out.shape == (3, 64, 64, 3) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    np.testing.assert_array_equal(out, pipe(e, t, num_inference_steps=3, generator=0).images)
    assert not np.array_equal(out, pipe(e, t, num_inference_steps=3, generator=1).images)
    # the conditioning reaches the images, and the text one too
    assert not np.allclose(out, pipe(e[::-1].copy(), t, num_inference_steps=3, generator=0).images)
    assert not np.allclose(out, pipe(e, None, num_inference_steps=3, generator=0).images)
    assert pipe.image_embed_dim == DI and pipe.text_embed_dim == DT and pipe.image_size == 64
    assert pipe.image_embedding_id == "img-features-a" and pipe.text_embedding_id == "text-a"


def test_images_per_prompt_are_grouped(pipe):
    e, t = _emb(2, DI), _emb(2, DT, 1)
    k2 = pipe(e, t, num_inference_steps=2, generator=5, num_images_per_prompt=2).images
    rep = pipe(np.repeat(e, 2, 0), np.repeat(t, 2, 0), num_inference_steps=2, generator=5).images
    assert k2.shape == (4, 64, 64, 3)
    np.testing.assert_allclose(k2, rep, atol=1e-6)


def test_guidance_one_equals_conditional_branch(pipe):
    """guidance 1 runs the conditional branch only; u + 1 * (c - u) = c."""
    e, t = _emb(2, DI), _emb(2, DT, 1)
    a = pipe(e, t, num_inference_steps=2, guidance_scale=1.0, generator=3).images
    b = pipe(e, t, num_inference_steps=2, guidance_scale=1.0 + 1e-7, generator=3).images
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_init_images_strength(pipe):
    e = _emb(2, DI)
    rng = np.random.default_rng(0)
    init = rng.uniform(0, 1, size=(2, 64, 64, 3)).astype(np.float32)
    zero = pipe(e, init_images=init, strength=0.0, generator=0).images
    with torch.no_grad():
        rec = pipe.vae(torch.from_numpy(init).permute(0, 3, 1, 2) * 2 - 1)
    expect = ((rec + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(zero, expect, atol=1e-5)  # strength 0: the init, unchanged
    u8 = pipe(e, init_images=np.round(init * 255).astype(np.uint8), strength=0.5,
              num_inference_steps=4, generator=0).images
    assert u8.shape == (2, 64, 64, 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(image_embeds=np.zeros((2, DI + 1))),
         r"image_embeds: expected an embedding of shape \(n, 16\)"),
        (dict(image_embeds=np.full((2, DI), np.nan)), "image_embeds: embeddings contain NaN"),
        (dict(text_embeds=np.zeros((3, DT))), "text_embeds: expected 2 rows"),
        (dict(text_embeds=np.zeros((2, DT + 2))), "text_embeds: expected an embedding of shape"),
        (dict(num_inference_steps=0), "num_inference_steps: expected an int >= 1"),
        (dict(strength=1.5, init_images=np.zeros((2, 64, 64, 3), np.float32)), "strength"),
        (dict(strength=-0.1), "strength"),
        (dict(init_images=np.zeros((2, 32, 32, 3), np.float32)),
         r"init_images: expected shape \(2, 64, 64, 3\)"),
        (dict(init_images=np.zeros((2, 64, 64, 3), np.int32)), "init_images: expected dtype uint8"),
        (dict(init_images=np.full((2, 64, 64, 3), 2.0, np.float32)), r"values in \[0, 1\]"),
        (dict(num_images_per_prompt=0), "num_images_per_prompt"),
        (dict(guidance_scale=float("nan")), "guidance_scale"),
        (dict(output_type="latent"), "output_type"),
    ],
)
def test_bad_input(pipe, kwargs, match):
    call = dict(image_embeds=_emb(2, DI), num_inference_steps=1)
    call.update(kwargs)
    with pytest.raises(ValueError, match=match):
        pipe(**call)


def test_ddim_without_clipping_and_the_pitfall(pipe):
    ddpm_cfg = DDPMScheduler(prediction_type="v_prediction").config
    # the pitfall: a DDIM made from a DDPM config clips latents to [-1, 1]
    assert DDIMScheduler.from_config(ddpm_cfg).config.clip_sample is True
    assert make_scheduler("ddim", ddpm_cfg).config.clip_sample is False
    p = _tiny()
    p.set_scheduler("ddim")
    assert isinstance(p.scheduler, DDIMScheduler)
    assert p(_emb(1, DI), num_inference_steps=2, generator=0).images.shape == (1, 64, 64, 3)
    p.scheduler = DDIMScheduler.from_config(ddpm_cfg)
    with pytest.raises(ValueError, match="clip_sample"):
        p(_emb(1, DI), num_inference_steps=2)
    with pytest.raises(ValueError, match="unknown scheduler 'euler'"):
        make_scheduler("euler", ddpm_cfg)


def test_save_load_roundtrip(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == "StimulusDiffusionPipeline"
    assert index["vae"] == ["decoding.generation.autoencoder", "StimulusAutoencoder"]
    assert index["conditioner"] == ["decoding.generation.diffusion", "EmbeddingConditioner"]
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    for name in ("vae", "unet", "scheduler", "conditioner"):
        assert (tmp_path / name).is_dir()
    e, t = _emb(2, DI), _emb(2, DT, 1)
    ref = pipe(e, t, num_inference_steps=2, generator=0).images
    for loaded in (load_pipeline(tmp_path), StimulusDiffusionPipeline.from_pretrained(tmp_path)):
        loaded.set_progress_bar_config(disable=True)
        assert isinstance(loaded, StimulusDiffusionPipeline)
        np.testing.assert_array_equal(loaded(e, t, num_inference_steps=2, generator=0).images, ref)
    # conditioning checks against a decoder's embeddings
    load_pipeline(tmp_path, image_embed_dim=DI, image_embedding_id="img-features-a")
    with pytest.raises(ValueError, match="image_embed_dim: the pipeline is conditioned on 16"):
        load_pipeline(tmp_path, image_embed_dim=32)
    with pytest.raises(ValueError, match="image_embedding_id"):
        check_conditioning(pipe, image_embedding_id="stimnet-v3-other")
    with pytest.raises(ValueError, match="text_embed_dim"):
        check_conditioning(pipe, text_embed_dim=77)


def test_load_pipeline_refuses_non_pipelines(pipe, tmp_path):
    with pytest.raises(FileNotFoundError, match="expected a local pipeline folder"):
        load_pipeline(tmp_path / "absent")
    (tmp_path / "junk").mkdir()
    with pytest.raises(FileNotFoundError, match="no model_index.json"):
        load_pipeline(tmp_path / "junk")
    (tmp_path / "junk" / "model_index.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_pipeline(tmp_path / "junk")
    good = tmp_path / "good"
    pipe.save_pretrained(good)
    import shutil

    shutil.rmtree(good / "unet")
    with pytest.raises(FileNotFoundError, match="component 'unet'"):
        load_pipeline(good)
    (tmp_path / "odd").mkdir()
    odd = {"_class_name": "NoSuchPipeline"}
    (tmp_path / "odd" / "model_index.json").write_text(json.dumps(odd))
    with pytest.raises(ValueError, match="NoSuchPipeline"):
        load_pipeline(tmp_path / "odd")
    # Versatile Diffusion (where this diffusers has it): a folder missing its components
    import diffusers

    if hasattr(diffusers, "VersatileDiffusionDualGuidedPipeline"):
        vd = tmp_path / "vd"
        vd.mkdir()
        (vd / "model_index.json").write_text(json.dumps({
            "_class_name": "VersatileDiffusionDualGuidedPipeline",
            "image_unet": ["diffusers", "UNet2DConditionModel"],
            "text_unet": ["versatile_diffusion", "UNetFlatConditionModel"]}))
        with pytest.raises(FileNotFoundError, match="component 'image_unet'"):
            load_pipeline(vd)


def _clip_tokenizer(folder):
    """A tiny real CLIP tokenizer (byte-level BPE with no merges) written to ``folder``."""
    from transformers import CLIPTokenizer

    words = ["a", "red", "cube", "blue", "torus"]
    chars = sorted({c for w in words for c in w})
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for tok in [*chars, *(c + "</w>" for c in chars)]:
        vocab.setdefault(tok, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                         model_max_length=77)


def test_tiny_stable_unclip_img2img_loads_locally(tmp_path):
    transformers = pytest.importorskip("transformers")
    from diffusers import AutoencoderKL, StableUnCLIPImg2ImgPipeline, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import (
        StableUnCLIPImageNormalizer,
    )

    torch.manual_seed(0)
    emb = 8
    tok_dir = tmp_path / "tok"
    tok_dir.mkdir()
    tokenizer = _clip_tokenizer(tok_dir)
    text_encoder = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=16, num_hidden_layers=1,
        num_attention_heads=2, projection_dim=emb, max_position_embeddings=77,
        bos_token_id=0, eos_token_id=1, pad_token_id=1))
    image_encoder = transformers.CLIPVisionModelWithProjection(transformers.CLIPVisionConfig(
        image_size=32, patch_size=8, hidden_size=16, intermediate_size=16, num_hidden_layers=1,
        num_attention_heads=2, projection_dim=emb))
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1,
        norm_num_groups=4, cross_attention_dim=16, attention_head_dim=2,
        class_embed_type="projection", projection_class_embeddings_input_dim=2 * emb)
    vae = AutoencoderKL(block_out_channels=(8, 8), norm_num_groups=4, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, sample_size=32)
    pipe = StableUnCLIPImg2ImgPipeline(
        feature_extractor=transformers.CLIPImageProcessor(crop_size=32, size=32),
        image_encoder=image_encoder, image_normalizer=StableUnCLIPImageNormalizer(emb),
        image_noising_scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2"),
        tokenizer=tokenizer, text_encoder=text_encoder, unet=unet,
        scheduler=DDIMScheduler(beta_schedule="scaled_linear", prediction_type="v_prediction",
                                clip_sample=False),
        vae=vae)
    out = tmp_path / "unclip"
    pipe.save_pretrained(out)
    loaded = load_pipeline(out, image_embed_dim=emb)
    assert type(loaded).__name__ == "StableUnCLIPImg2ImgPipeline"
    assert isinstance(loaded, DiffusionPipeline)
    with pytest.raises(ValueError, match="image_embed_dim: the pipeline is conditioned on 8"):
        load_pipeline(out, image_embed_dim=128)
    loaded.set_progress_bar_config(disable=True)
    image = np.random.default_rng(0).uniform(0, 1, (1, 32, 32, 3)).astype(np.float32)
    res = loaded(image=torch.from_numpy(image).permute(0, 3, 1, 2), prompt="a red cube",
                 num_inference_steps=2, height=32, width=32, output_type="np",
                 generator=torch.Generator().manual_seed(0))
    assert res.images.shape == (1, 32, 32, 3)
