"""Tiny random-weight diffusers video pipelines, built locally (no downloads).

The shapes follow diffusers' own pipeline tests (tests/pipelines/animatediff, text_to_video
in diffusers 0.42.1), made smaller: 2 UNet levels, 32 channels, 16×16 pixels (8×8
latents). The CLIP tokenizer gets a byte-level vocabulary written here (no merges), so
prompts work without the Hugging Face hub.
"""

from __future__ import annotations

from pathlib import Path

import torch

from bench.gpu_cost import byte_tokenizer, clip_text_encoder


def tokenizer(folder: Path):
    return byte_tokenizer(folder)


def text_encoder(hidden: int = 32, *, projection: bool = False, seed: int = 0):
    return clip_text_encoder(hidden, 4, 2, projection=projection, seed=seed).eval()


def vae(seed: int = 0):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=[32, 32],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=16,
    ).eval()


def scheduler(name: str = "DDIMScheduler", **config):
    import diffusers

    base = dict(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
    )
    if name in ("DDIMScheduler", "LCMScheduler"):
        base.update(clip_sample=False, steps_offset=1, set_alpha_to_one=False)
    base.update(config)
    return getattr(diffusers, name)(**base)


def animatediff(tmp: Path, scheduler_name: str = "DDIMScheduler", *, ip_adapter=False, **cfg):
    """AnimateDiffPipeline: SD1.5-shaped UNet + motion adapter (+ tiny IP-Adapter)."""
    from diffusers import AnimateDiffPipeline, MotionAdapter, UNet2DConditionModel

    torch.manual_seed(1)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=2,
    )
    torch.manual_seed(2)
    adapter = MotionAdapter(
        block_out_channels=(32, 64),
        motion_layers_per_block=1,
        motion_norm_num_groups=2,
        motion_num_attention_heads=4,
    )
    _refill_zeroed(adapter)
    extra = {}
    if ip_adapter:
        extra.update(image_encoder_and_processor())
    pipe = AnimateDiffPipeline(
        vae=vae(),
        text_encoder=text_encoder(),
        tokenizer=tokenizer(tmp / "tokenizer"),
        unet=unet,
        motion_adapter=adapter,
        scheduler=scheduler(scheduler_name, **cfg),
        **extra,
    )
    if ip_adapter:
        pipe.load_ip_adapter(
            ip_adapter_state_dict(pipe.unet, embed_dim=32),
            subfolder="",
            weight_name="",
            image_encoder_folder=None,
        )
    return ready(pipe)


def animatediff_sdxl(tmp: Path, scheduler_name: str = "DDIMScheduler", **cfg):
    """AnimateDiffSDXLPipeline: SDXL-shaped UNet (text_time conditioning, two encoders)."""
    from diffusers import AnimateDiffSDXLPipeline, MotionAdapter, UNet2DConditionModel

    torch.manual_seed(3)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=8 * 6 + 32,
        cross_attention_dim=64,
        norm_num_groups=2,
    )
    torch.manual_seed(4)
    adapter = MotionAdapter(
        block_out_channels=(32, 64),
        motion_layers_per_block=1,
        motion_norm_num_groups=2,
        motion_num_attention_heads=4,
        use_motion_mid_block=False,
    )
    _refill_zeroed(adapter)
    pipe = AnimateDiffSDXLPipeline(
        vae=vae(),
        text_encoder=text_encoder(seed=5),
        text_encoder_2=text_encoder(projection=True, seed=6),
        tokenizer=tokenizer(tmp / "tokenizer"),
        tokenizer_2=tokenizer(tmp / "tokenizer_2"),
        unet=unet,
        motion_adapter=adapter,
        scheduler=scheduler(scheduler_name, **cfg),
    )
    return ready(pipe)


def modelscope(tmp: Path, scheduler_name: str = "DDIMScheduler", **cfg):
    """TextToVideoSDPipeline (ModelScope T2V) with a tiny UNet3DConditionModel."""
    from diffusers import UNet3DConditionModel
    from diffusers.pipelines.deprecated.text_to_video_synthesis import TextToVideoSDPipeline

    torch.manual_seed(7)
    unet = UNet3DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=2,
    )
    _refill_zeroed(unet)
    pipe = TextToVideoSDPipeline(
        vae=vae(),
        text_encoder=text_encoder(),
        tokenizer=tokenizer(tmp / "tokenizer"),
        unet=unet,
        scheduler=scheduler(scheduler_name, **cfg),
    )
    return ready(pipe)


def ready(pipe):
    """Models built from configs start in training mode (from_pretrained ones do not):
    without eval() ModelScope's temporal convolutions apply dropout at random."""
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def image_encoder_and_processor(seed: int = 8) -> dict:
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    torch.manual_seed(seed)
    config = CLIPVisionConfig(
        hidden_size=32,
        projection_dim=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        image_size=32,
        patch_size=4,
    )
    processor = CLIPImageProcessor(crop_size=32, size=32)
    return {
        "image_encoder": CLIPVisionModelWithProjection(config).eval(),
        "feature_extractor": processor,
    }


def ip_adapter_state_dict(unet, embed_dim: int) -> dict:
    """Random IP-Adapter weights in the layout diffusers' ``load_ip_adapter`` reads.

    ``image_proj``: 4 tokens of the UNet's cross-attention width from ``embed_dim``-d
    image embeddings; ``ip_adapter``: ``to_k_ip``/``to_v_ip`` for every cross-attention
    processor (not the motion modules), numbered 1, 3, 5, ... in ``attn_processors``
    order (diffusers/loaders/unet.py ``_convert_ip_adapter_attn_to_diffusers``).
    """
    gen = torch.Generator().manual_seed(9)
    cross = unet.config.cross_attention_dim
    widths = list(unet.config.block_out_channels)
    layers, key_id = {}, 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor") or "motion_modules" in name:
            continue
        if name.startswith("mid_block"):
            hidden = widths[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(widths))[int(name[len("up_blocks.")])]
        else:
            hidden = widths[int(name[len("down_blocks.")])]
        for kind in ("to_k_ip", "to_v_ip"):
            layers[f"{key_id}.{kind}.weight"] = torch.randn(hidden, cross, generator=gen) * 0.2
        key_id += 2
    proj = {
        "proj.weight": torch.randn(cross * 4, embed_dim, generator=gen) * 0.2,
        "proj.bias": torch.zeros(cross * 4),
        "norm.weight": torch.ones(cross),
        "norm.bias": torch.zeros(cross),
    }
    return {"image_proj": proj, "ip_adapter": layers}


def _refill_zeroed(module: torch.nn.Module, scale: float = 0.05) -> None:
    """Give zero-initialised layers (motion-module outputs) small random weights, so the
    frames really interact (seeded by the caller's torch.manual_seed)."""
    with torch.no_grad():
        for sub in module.modules():
            weight = getattr(sub, "weight", None)
            if isinstance(weight, torch.Tensor) and weight.ndim >= 2 and not weight.any():
                weight.normal_(0.0, scale)


class TinyVideoPipeline:
    """The shipped small video model (bench/tinyvideo) in a diffusers pipeline's loop.

    Unconditional and in pixel space (no VAE: ``vae_scale_factor`` 1, pass
    ``reference_latent``). The loop is AnimateDiffPipeline.__call__'s (diffusers 0.42.1,
    pipelines/animatediff/pipeline_animatediff.py, steps 4-8) without guidance:
    ``set_timesteps``, ``latents * init_noise_sigma``, then per timestep
    ``scale_model_input`` → model → ``scheduler.step(...).prev_sample``, with ``eta`` and
    ``generator`` passed when ``inspect.signature(scheduler.step)`` lists them.
    """

    vae_scale_factor = 1

    def __init__(self, model, scheduler) -> None:
        import types

        self.model, self.scheduler = model, scheduler
        self.vae = None
        self.unet = types.SimpleNamespace(
            config=types.SimpleNamespace(in_channels=3, sample_size=16),
            dtype=torch.float32,
            device=torch.device("cpu"),
        )

    @torch.no_grad()
    def __call__(
        self,
        prompt=None,
        num_frames=8,
        height=16,
        width=16,
        num_inference_steps=25,
        generator=None,
        latents=None,
        eta=0.0,
    ):
        import inspect

        self.scheduler.set_timesteps(num_inference_steps, device="cpu")
        timesteps = self.scheduler.timesteps
        latents = latents * self.scheduler.init_noise_sigma
        accepted = set(inspect.signature(self.scheduler.step).parameters)
        extra = {k: v for k, v in (("eta", eta), ("generator", generator)) if k in accepted}
        for t in timesteps:
            model_input = self.scheduler.scale_model_input(latents, t)
            noise_pred = self.model(model_input, t)
            latents = self.scheduler.step(noise_pred, t, latents, **extra).prev_sample
        return (latents,)
