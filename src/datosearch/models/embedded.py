"""The embedded default model: a pixel-space, text-conditioned digit diffusion pipeline.

`EmbeddedDigitsPipeline` follows StableDiffusionPipeline's code path (prompt -> text conditioning ->
scheduler loop with one batched [uncond, cond] U-Net call per step -> images) without a VAE.
`embedded_unet()` / `embedded_text_encoder()` build the shipped architecture; `load_embedded()` loads
the trained weights shipped in `models/weights/embedded/`.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Optional, Union

import torch
from diffusers import DiffusionPipeline, PNDMScheduler, UNet2DConditionModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import retrieve_timesteps
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTokenizer

from ..errors import MissingFileError
from .attention import EmbeddedAttnProcessor
from .prompt_encoder import PromptEmbeddingEncoder
from .tiny import byte_level_clip_tokenizer

EMBEDDED_DIR = Path(__file__).parent / "weights" / "embedded"
PROMPT_LENGTH = 24  # "a handwritten digit 7" is 20 byte-level tokens with BOS/EOS
TEXT_DIM = 32
DEFAULT_GUIDANCE = 1.5


def embedded_unet(seed: int = 0) -> UNet2DConditionModel:
    """32x32x1 U-Net, 3 levels; cross-attention transformers at 32x32 (1024 tokens) and 16x16, plus the mid block.

    One transformer block at the top level (in the down path): each one there costs about 30 s of the
    200-image evaluation on 2 CPU cores, so an SD-style top level (three blocks with one layer per
    block) would not fit the 60 s budget (docs/embedded.md).
    Attention runs through `EmbeddedAttnProcessor` (same results as diffusers' SDPA processor, faster on CPU).
    """
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=32, in_channels=1, out_channels=1, layers_per_block=1,
        block_out_channels=(8, 16, 32), norm_num_groups=8, cross_attention_dim=TEXT_DIM,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(1, 1, 2),  # heads per level (diffusers' legacy name): head dims 8, 16, 16
        use_linear_projection=True,  # as SD 2
    )
    unet.set_attn_processor(EmbeddedAttnProcessor())
    return unet


def embedded_text_encoder(seed: int = 0) -> PromptEmbeddingEncoder:
    """32-wide embedding-table text encoder over the byte-level tokenizer's 514 tokens."""
    torch.manual_seed(seed)
    tokenizer = embedded_tokenizer()
    return PromptEmbeddingEncoder(vocab_size=len(tokenizer), hidden_size=TEXT_DIM,
                                  max_position_embeddings=PROMPT_LENGTH, eos_token_id=tokenizer.eos_token_id)


def embedded_tokenizer() -> CLIPTokenizer:
    """Offline byte-level CLIP tokenizer padded to `PROMPT_LENGTH`."""
    return byte_level_clip_tokenizer(model_max_length=PROMPT_LENGTH)


# The source of truth for the scheduler (`weights/embedded/scheduler/scheduler_config.json` is a copy written
# by `save_pretrained`). Besides PLMS's own options it names every option other diffusers schedulers read,
# so `XScheduler.from_config(pipe.scheduler.config)` samples as the model was trained (as SD's configs do):
# no x0 clipping or thresholding (DDIM/DDPM default to `clip_sample=True`, which biases this pixel-space
# model, whose background sits at the clip bound -1) and one timestep spacing for all (DPM-Solver, Euler
# and others default to "linspace").
SCHEDULER_CONFIG: dict = dict(
    num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear", trained_betas=None,
    rescale_betas_zero_snr=False,  # training: the plain linear schedule, uniform t in [0, 999]
    prediction_type="v_prediction",  # training target v = sqrt(a) * noise - sqrt(1 - a) * x0
    clip_sample=False, thresholding=False,
    timestep_spacing="leading", steps_offset=1, set_alpha_to_one=False,  # as SD 1.x/2.x
    skip_prk_steps=True,  # PLMS
)


def embedded_scheduler(**overrides) -> PNDMScheduler:
    """PLMS (PNDM without Runge-Kutta warm-up), linear 1000-step pixel-space schedule, v-prediction (as SD 2).

    Built with `from_config`, so options PNDM itself ignores (`clip_sample`, ...) stay in its config.
    """
    return PNDMScheduler.from_config({**SCHEDULER_CONFIG, **overrides})


class EmbeddedDigitsPipeline(DiffusionPipeline):
    """Text-to-image for 32x32 gray digits, mirroring StableDiffusionPipeline minus the VAE."""

    model_cpu_offload_seq = "text_encoder->unet"

    def __init__(self, unet: UNet2DConditionModel, text_encoder: PromptEmbeddingEncoder, tokenizer: CLIPTokenizer,
                 scheduler, guidance_scale: float = DEFAULT_GUIDANCE):
        super().__init__()
        self.register_modules(unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)
        self.register_to_config(guidance_scale=guidance_scale)
        self._guidance_scale = guidance_scale

    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guidance_scale > 1 and self.unet.config.time_cond_proj_dim is None

    @torch.no_grad()
    def encode_prompt(self, prompt: list[str], device: torch.device) -> torch.Tensor:
        """Token ids -> text encoder hidden states (B, PROMPT_LENGTH, TEXT_DIM)."""
        ids = self.tokenizer(prompt, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        return self.text_encoder(ids.to(device))[0]

    @torch.no_grad()
    def __call__(
        self,
        prompt: Union[str, list[str]],
        num_inference_steps: int = 50,
        timesteps: Optional[list[int]] = None,
        sigmas: Optional[list[float]] = None,
        guidance_scale: Optional[float] = None,
        negative_prompt: Optional[Union[str, list[str]]] = None,
        num_images_per_prompt: int = 1,
        generator: Optional[Union[torch.Generator, list[torch.Generator]]] = None,
        latents: Optional[torch.Tensor] = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ):
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        batch = len(prompts) * num_images_per_prompt
        self._guidance_scale = self.config.guidance_scale if guidance_scale is None else float(guidance_scale)
        device = self._execution_device
        dtype = self.unet.dtype

        # 1. conditioning: [uncond, cond] like StableDiffusionPipeline
        cond = self.encode_prompt(prompts, device).repeat_interleave(num_images_per_prompt, dim=0)
        if self.do_classifier_free_guidance:
            negatives = [""] * len(prompts) if negative_prompt is None else (
                [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else list(negative_prompt))
            if len(negatives) != len(prompts):
                raise ValueError(f"negative_prompt has {len(negatives)} entries for {len(prompts)} prompts")
            uncond = self.encode_prompt(negatives, device).repeat_interleave(num_images_per_prompt, dim=0)
            cond = torch.cat([uncond, cond])
        cond = cond.to(dtype)

        # 2. timesteps (explicit `timesteps` / `sigmas` as StableDiffusionPipeline takes them) and initial noise
        timesteps, num_inference_steps = retrieve_timesteps(self.scheduler, num_inference_steps, device, timesteps,
                                                            sigmas)
        size = self.unet.config.sample_size
        shape = (batch, self.unet.config.in_channels, size, size)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        latents = latents.to(device=device, dtype=dtype) * self.scheduler.init_noise_sigma

        # 3. denoising loop: one U-Net call per scheduler step; stochastic schedulers draw from `generator`
        takes_generator = "generator" in inspect.signature(self.scheduler.step).parameters
        step_kwargs = {"generator": generator} if takes_generator else {}
        with self.progress_bar(total=len(timesteps)) as bar:
            for t in timesteps:
                latent_in = torch.cat([latents] * 2) if self.do_classifier_free_guidance else latents
                latent_in = self.scheduler.scale_model_input(latent_in, t)
                pred = self.unet(latent_in, t, encoder_hidden_states=cond).sample  # v (or epsilon)
                if self.do_classifier_free_guidance:
                    pred_uncond, pred_cond = pred.chunk(2)
                    pred = pred_uncond + self._guidance_scale * (pred_cond - pred_uncond)
                latents = self.scheduler.step(pred, t, latents, **step_kwargs).prev_sample
                bar.update()

        # 4. pixels in [-1, 1] -> images in [0, 1]
        images = (latents.float() / 2 + 0.5).clamp(0, 1)
        if output_type == "np":
            images = images.permute(0, 2, 3, 1).cpu().numpy()
        elif output_type == "pil":
            images = self.numpy_to_pil(images.permute(0, 2, 3, 1).cpu().numpy())
        elif output_type not in ("pt", "latent"):
            raise ValueError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)


def build_embedded_pipeline(unet: UNet2DConditionModel, text_encoder: PromptEmbeddingEncoder,
                            guidance_scale: float = DEFAULT_GUIDANCE) -> EmbeddedDigitsPipeline:
    """Assemble a pipeline with the shipped tokenizer and PLMS scheduler (its U-Net gets `EmbeddedAttnProcessor`)."""
    unet.set_attn_processor(EmbeddedAttnProcessor())
    pipe = EmbeddedDigitsPipeline(unet=unet.eval(), text_encoder=text_encoder.eval(), tokenizer=embedded_tokenizer(),
                                  scheduler=embedded_scheduler(), guidance_scale=guidance_scale)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_embedded(device: Union[str, torch.device] = "cpu", dtype: torch.dtype = torch.float32,
                  path: Union[str, Path] = EMBEDDED_DIR) -> EmbeddedDigitsPipeline:
    """The shipped, trained embedded pipeline (offline; weights from package data)."""
    import json

    path = Path(path)
    if not (path / "unet" / "config.json").exists():
        raise MissingFileError(f"the embedded model's weights are missing at {path}; run scripts/train_embedded.py")
    unet = UNet2DConditionModel.from_pretrained(path / "unet", local_files_only=True, torch_dtype=dtype,
                                                low_cpu_mem_usage=False)
    text_encoder = PromptEmbeddingEncoder.from_pretrained(path / "text_encoder", local_files_only=True, torch_dtype=dtype,
                                                          low_cpu_mem_usage=False)  # 16k parameters: accelerate not needed
    settings = json.loads((path / "pipeline.json").read_text())
    pipe = build_embedded_pipeline(unet, text_encoder, guidance_scale=settings["guidance_scale"])
    return pipe.to(device)
