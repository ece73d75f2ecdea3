"""Stable-Diffusion-shaped pipelines built offline from configs (random weights, no downloads).

`tiny_sd_pipeline()` is a few-MB StableDiffusionPipeline for tests, `tiny_variant()` the same
components as img2img, inpainting or ControlNet pipelines, `tiny_sdxl_pipeline()` an SDXL pipeline
(two text encoders, extra time embeddings); `sd15_unet()`, `sd2_unet()` and `sdxl_unet()` give U-Nets
of the real models' shapes (random weights run at the real models' speed).
"""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    DDIMScheduler,
    DiffusionPipeline,
    PNDMScheduler,
    StableDiffusionControlNetPipeline,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

_BOS, _EOS = "<|startoftext|>", "<|endoftext|>"


def byte_level_clip_tokenizer(model_max_length: int = 77) -> CLIPTokenizer:
    """A CLIPTokenizer whose vocabulary is the 256 byte-level characters (with and without `</w>`).

    It needs no merges file, works offline and round-trips through `save_pretrained`.
    """
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = sorted(ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    vocab.update({ch + "</w>": len(alphabet) + i for i, ch in enumerate(alphabet)})
    vocab[_BOS] = len(vocab)
    vocab[_EOS] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)


def tiny_text_encoder(hidden_size: int = 32, vocab_size: int = 514, max_positions: int = 77, seed: int = 0) -> CLIPTextModel:
    """A 2-layer CLIP text model matching `byte_level_clip_tokenizer()` (vocab 514)."""
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=max_positions,
        bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
    )
    return CLIPTextModel(config).eval()


def tiny_unet(sample_size: int = 16, cross_attention_dim: int = 32, seed: int = 0, **overrides) -> UNet2DConditionModel:
    """A small SD1.5-layout U-Net: 3 levels, cross-attention at the two outer ones, 2 layers per block."""
    torch.manual_seed(seed)
    config = dict(
        sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(32, 64, 64), norm_num_groups=32, cross_attention_dim=cross_attention_dim,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=8,
    )
    config.update(overrides)
    return UNet2DConditionModel(**config).eval()


def tiny_vae(seed: int = 0) -> AutoencoderKL:
    """A 2-level VAE (downscale 2) so latents stay small."""
    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 32),
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=32, layers_per_block=1, sample_size=32,
    ).eval()


def tiny_sd_pipeline(scheduler: str = "pndm", sample_size: int = 16, seed: int = 0, **unet_overrides) -> StableDiffusionPipeline:
    """A complete StableDiffusionPipeline with random weights, built from configs in well under a second."""
    unet = tiny_unet(sample_size=sample_size, seed=seed, **unet_overrides)
    sched_config = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", set_alpha_to_one=False,
                        steps_offset=1)
    sched = (PNDMScheduler(skip_prk_steps=True, **sched_config) if scheduler == "pndm"
             else DDIMScheduler(clip_sample=False, **sched_config))
    pipe = StableDiffusionPipeline(
        unet=unet, vae=tiny_vae(seed), text_encoder=tiny_text_encoder(unet.config.cross_attention_dim, seed=seed),
        tokenizer=byte_level_clip_tokenizer(), scheduler=sched, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


VARIANTS = {"img2img": StableDiffusionImg2ImgPipeline, "inpaint": StableDiffusionInpaintPipeline,
            "controlnet": StableDiffusionControlNetPipeline}


def tiny_controlnet(unet: UNet2DConditionModel, seed: int = 0) -> ControlNetModel:
    """A ControlNet copied from `unet` (one stride-2 conditioning step, as the tiny VAE has), its zero
    convolutions made random so that its residuals are not zero, as a trained ControlNet's are not."""
    torch.manual_seed(seed)
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32))
    for conv in [*net.controlnet_down_blocks, net.controlnet_mid_block]:
        torch.nn.init.normal_(conv.weight, std=0.05)
    return net.eval()


def tiny_variant(kind: str, scheduler: str = "ddim", sample_size: int = 16, seed: int = 0,
                 **unet_overrides) -> DiffusionPipeline:
    """`tiny_sd_pipeline`'s components as an img2img, inpainting (9-channel U-Net) or ControlNet pipeline."""
    if kind == "inpaint":
        unet_overrides.setdefault("in_channels", 9)
    components = tiny_sd_pipeline(scheduler, sample_size, seed, **unet_overrides).components
    if kind == "controlnet":
        components["controlnet"] = tiny_controlnet(components["unet"], seed)
    pipe = VARIANTS[kind](**components, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_sdxl_pipeline(scheduler: str = "ddim", sample_size: int = 16, seed: int = 0) -> StableDiffusionXLPipeline:
    """A complete StableDiffusionXLPipeline: SDXL's block layout (no attention at the top level), two text
    encoders whose hidden states are concatenated, the pooled text embedding and size/crop time ids."""
    hidden = 32
    unet = tiny_unet(
        sample_size=sample_size, cross_attention_dim=2 * hidden, seed=seed, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2), attention_head_dim=(4, 8), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=8 * 6 + hidden)
    torch.manual_seed(seed + 1)
    text_2 = CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=514, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=77, projection_dim=hidden, bos_token_id=512, eos_token_id=513,
        pad_token_id=513)).eval()
    base = tiny_sd_pipeline(scheduler, sample_size, seed)
    pipe = StableDiffusionXLPipeline(
        vae=base.vae, text_encoder=tiny_text_encoder(hidden, seed=seed), text_encoder_2=text_2,
        tokenizer=base.tokenizer, tokenizer_2=byte_level_clip_tokenizer(), unet=unet, scheduler=base.scheduler,
        add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sd15_unet(**overrides) -> UNet2DConditionModel:
    """SD1.5's U-Net shape (860M parameters, random weights)."""
    return UNet2DConditionModel(**{"sample_size": 64, "cross_attention_dim": 768, **overrides}).eval()


def sd2_unet(**overrides) -> UNet2DConditionModel:
    """SD2's U-Net shape: linear projections and per-level head dims."""
    config = dict(sample_size=96, cross_attention_dim=1024, use_linear_projection=True,
                  attention_head_dim=(5, 10, 20, 20))
    return UNet2DConditionModel(**{**config, **overrides}).eval()


def sdxl_unet(**overrides) -> UNet2DConditionModel:
    """SDXL's U-Net shape: no attention at the top level, 2 and 10 transformer layers deeper down."""
    config = dict(
        sample_size=128, cross_attention_dim=2048, block_out_channels=(320, 640, 1280),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
    )
    return UNet2DConditionModel(**{**config, **overrides}).eval()


def sd15_pipeline(scheduler: str = "pndm", dtype: torch.dtype = torch.float32) -> StableDiffusionPipeline:
    """SD1.5's full shape (U-Net, CLIP-L-shaped text encoder, SD VAE) with random weights, offline."""
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=514, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        max_position_embeddings=77, bos_token_id=512, eos_token_id=513, pad_token_id=513)).eval()
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=2, sample_size=512).eval()
    pipe = tiny_sd_pipeline(scheduler=scheduler)
    pipe = StableDiffusionPipeline(
        unet=sd15_unet(), vae=vae, text_encoder=text, tokenizer=pipe.tokenizer, scheduler=pipe.scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False).to(dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe
