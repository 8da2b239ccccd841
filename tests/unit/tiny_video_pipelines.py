"""Tiny random-weight diffusers *transformer* video pipelines, built locally (no downloads).

Flow-matching and v-prediction video pipelines of diffusers 0.42.1, each shaped like the
real model (same classes, schedulers and scheduler configs, same latent channels and VAE
scale factors) but with a few channels and one or two layers, so one call of 2-3 steps on
a few frames at a tiny resolution takes well under a second on a CPU. Text goes through
the byte-level CLIP tokenizer of ``bench.gpu_cost`` and tiny random UMT5 / T5 / Llama /
CLIP text encoders, so ``pipe(prompt="a", ...)`` works without the Hugging Face hub.

Every builder returns ``(pipe, facts)``: the pipeline, in eval mode with the progress bar
off, and a dict of facts (``facts["call"]`` are the keyword arguments of the smoke call,
``facts["latent_shape"]`` the shape of the latents such a call samples, and passes back
with ``output_type="latent"``). The facts and the loops behind them are written up in
docs/diffusers-video-pipelines.md. Builders are seeded: the same arguments give the same
weights.

    python tests/unit/tiny_video_pipelines.py     # builds and calls each once, prints timings
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

#: Wan 2.2's VAE (TI2V-5B) per-channel latent statistics, from Wan-AI/Wan2.2-TI2V-5B-Diffusers
#: vae/config.json (as written by diffusers' scripts/convert_wan_to_diffusers.py).
WAN22_LATENTS_MEAN = [
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
    -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
    -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
    -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
    0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
]  # fmt: skip
WAN22_LATENTS_STD = [
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
    0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
    0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
    0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
    0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
]  # fmt: skip

#: Text width of every tiny text encoder here (T5/UMT5 d_model, Llama hidden size).
TEXT_DIM = 32


# ----------------------------------------------------------------------------- text
def _tokenizer(model_max_length: int = 512):
    """The byte-level CLIP tokenizer (no merges, no hub); it keeps its vocabulary in memory.

    Its pad token is ``<|endoftext|>`` (id 513), so ``padding="max_length"`` works for every
    pipeline's T5-style call; ``model_max_length`` is raised so that the pipelines' own
    ``max_sequence_length`` (226-512) is not truncated to CLIP's 77.
    """
    from bench.gpu_cost import byte_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tok = byte_tokenizer(Path(tmp))
    tok.model_max_length = model_max_length
    return tok


def _clip_tokenizer():
    """For CLIP text encoders (HunyuanVideo's second encoder): 77 tokens, as CLIP has."""
    return _tokenizer(77)


def _umt5(seed: int):
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    config = UMT5Config(
        vocab_size=514,
        d_model=TEXT_DIM,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        pad_token_id=513,
        eos_token_id=513,
        decoder_start_token_id=0,
    )
    return UMT5EncoderModel(config)


def _t5(seed: int):
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=514,
        d_model=TEXT_DIM,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        pad_token_id=513,
        eos_token_id=513,
        decoder_start_token_id=0,
    )
    return T5EncoderModel(config)


def _llama(seed: int, hidden: int = 16):
    """HunyuanVideo's Llava-Llama text encoder, tiny: it reads ``hidden_states[-3]``."""
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=514,
        hidden_size=hidden,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        bos_token_id=512,
        eos_token_id=513,
        pad_token_id=513,
    )
    return LlamaModel(config)


def _clip(seed: int, hidden: int = 8):
    from bench.gpu_cost import clip_text_encoder

    return clip_text_encoder(hidden, 4, 2, seed=seed)


# ----------------------------------------------------------------------------- schedulers
def flow_euler(shift: float = 1.0, **config):
    """``FlowMatchEulerDiscreteScheduler`` (what WanPipeline/Hunyuan/LTX/Mochi ship)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(shift=shift, **config)


def flow_unipc(flow_shift: float = 3.0, **config):
    """``UniPCMultistepScheduler`` in flow mode, as the Wan-AI ``*-Diffusers`` repos ship it
    (diffusers' scripts/convert_wan_to_diffusers.py: flow_shift 3.0, 5.0 for TI2V-5B)."""
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        num_train_timesteps=1000,
        flow_shift=flow_shift,
        **config,
    )


def _wan_scheduler(scheduler: str, shift: float):
    if scheduler == "euler":
        return flow_euler(shift)
    if scheduler == "unipc":
        return flow_unipc(shift)
    raise ValueError(f"scheduler: 'euler' or 'unipc', not {scheduler!r}")


# ----------------------------------------------------------------------------- helpers
def ready(pipe):
    """Models built from configs start in training mode (from_pretrained ones do not)."""
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _refill_zeroed(module: torch.nn.Module, scale: float = 0.05) -> None:
    """Small random weights for zero-initialised layers (output projections, gates), so that
    the random model's prediction depends on its input (seeded by the caller)."""
    with torch.no_grad():
        for sub in module.modules():
            for name in ("weight", "bias"):
                w = getattr(sub, name, None)
                if isinstance(w, torch.Tensor) and w.ndim >= 1 and w.numel() > 1 and not w.any():
                    w.normal_(0.0, scale)


def _facts(name: str, call: dict, latent_shape: tuple, **more: Any) -> dict:
    return {"pipeline": name, "call": call, "latent_shape": tuple(latent_shape), **more}


# ----------------------------------------------------------------------------- Wan
def _wan_vae_21(seed: int = 0):
    """Wan 2.1's VAE (also Wan 2.2 A14B's): z_dim 16, ×8 spatial, ×4 temporal, causal.

    Default ``latents_mean``/``latents_std`` are the real Wan 2.1 statistics (diffusers keeps
    them as the class defaults)."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    return AutoencoderKLWan(
        base_dim=3,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )


def _wan_vae_22(seed: int = 0):
    """Wan 2.2's VAE (TI2V-5B): z_dim 48, pixels patchified 2×2 into 12 channels first,
    ×16 spatial in all (``scale_factor_spatial=16``), ×4 temporal, residual blocks."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    return AutoencoderKLWan(
        base_dim=3,
        decoder_base_dim=4,
        z_dim=48,
        in_channels=12,
        out_channels=12,
        is_residual=True,
        patch_size=2,
        latents_mean=WAN22_LATENTS_MEAN,
        latents_std=WAN22_LATENTS_STD,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        scale_factor_spatial=16,
        scale_factor_temporal=4,
        temperal_downsample=[False, True, True],
    )


def _wan_transformer(channels: int, seed: int):
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    model = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=channels,
        out_channels=channels,
        text_dim=TEXT_DIM,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )
    _refill_zeroed(model)
    return model


def _wan_facts(name, pipe, call, scheduler, **more):
    vae = pipe.vae
    t, s = pipe.vae_scale_factor_temporal, pipe.vae_scale_factor_spatial
    shape = (
        1,
        vae.config.z_dim,
        (call["num_frames"] - 1) // t + 1,
        call["height"] // s,
        call["width"] // s,
    )
    return _facts(
        name,
        call,
        shape,
        layout="[B, C, T, H, W]",
        latent_frames="(num_frames - 1) // 4 + 1 (num_frames rounded down to 4k+1 first)",
        vae_scale_factor_spatial=s,
        vae_scale_factor_temporal=t,
        patch_size=tuple(pipe.transformer.config.patch_size),
        prediction="flow velocity v = noise - x0 (x = (1 - σ)·x0 + σ·noise)",
        scheduler=scheduler,
        causal_vae=True,
        **more,
    )


def wan21(scheduler: str = "euler", shift: float = 3.0):
    """``WanPipeline`` as Wan 2.1 T2V (1.3B and 14B differ only in size): one transformer,
    16 latent channels, Wan 2.1's VAE."""
    from diffusers import WanPipeline

    pipe = WanPipeline(
        tokenizer=_tokenizer(),
        text_encoder=_umt5(10),
        vae=_wan_vae_21(),
        scheduler=_wan_scheduler(scheduler, shift),
        transformer=_wan_transformer(16, 11),
    )
    call = {"num_frames": 9, "height": 32, "width": 32}
    return ready(pipe), _wan_facts("wan2.1-t2v", pipe, call, scheduler)


def wan22_a14b(scheduler: str = "euler", shift: float = 3.0, boundary_ratio: float = 0.875):
    """``WanPipeline`` as Wan 2.2 T2V A14B: ``transformer`` (high noise, t ≥ boundary) and
    ``transformer_2`` (low noise), ``boundary_ratio`` 0.875 (T2V; I2V A14B uses 0.9), Wan
    2.1's VAE."""
    from diffusers import WanPipeline

    pipe = WanPipeline(
        tokenizer=_tokenizer(),
        text_encoder=_umt5(10),
        vae=_wan_vae_21(),
        scheduler=_wan_scheduler(scheduler, shift),
        transformer=_wan_transformer(16, 11),
        transformer_2=_wan_transformer(16, 12),
        boundary_ratio=boundary_ratio,
    )
    call = {"num_frames": 9, "height": 32, "width": 32}
    facts = _wan_facts(
        "wan2.2-t2v-a14b",
        pipe,
        call,
        scheduler,
        boundary_timestep=boundary_ratio * 1000,
    )
    return ready(pipe), facts


def wan22_ti2v_5b(scheduler: str = "euler", shift: float = 5.0):
    """``WanPipeline`` as Wan 2.2 TI2V-5B: 48 latent channels, Wan 2.2's VAE (×16 spatial),
    ``expand_timesteps=True`` (the timestep is given per token)."""
    from diffusers import WanPipeline

    pipe = WanPipeline(
        tokenizer=_tokenizer(),
        text_encoder=_umt5(10),
        vae=_wan_vae_22(),
        scheduler=_wan_scheduler(scheduler, shift),
        transformer=_wan_transformer(48, 13),
        expand_timesteps=True,
    )
    call = {"num_frames": 9, "height": 64, "width": 64}
    return ready(pipe), _wan_facts("wan2.2-ti2v-5b", pipe, call, scheduler)


# ----------------------------------------------------------------------------- HunyuanVideo
def hunyuan_video():
    """``HunyuanVideoPipeline``: 16 latent channels, ×8 spatial and ×4 temporal causal VAE
    (scaling factor 0.476986), embedded guidance, FlowMatchEuler with shift 7."""
    from diffusers import (
        AutoencoderKLHunyuanVideo,
        HunyuanVideoPipeline,
        HunyuanVideoTransformer3DModel,
    )

    torch.manual_seed(20)
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=16,
        out_channels=16,
        num_attention_heads=2,
        attention_head_dim=10,
        num_layers=1,
        num_single_layers=1,
        num_refiner_layers=1,
        patch_size=1,
        patch_size_t=1,
        guidance_embeds=True,
        text_embed_dim=16,
        pooled_projection_dim=8,
        rope_axes_dim=(2, 4, 4),
    )
    _refill_zeroed(transformer)
    torch.manual_seed(21)
    vae = AutoencoderKLHunyuanVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=16,
        down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        act_fn="silu",
        norm_num_groups=4,
        scaling_factor=0.476986,
        spatial_compression_ratio=8,
        temporal_compression_ratio=4,
        mid_block_add_attention=True,
    )
    pipe = HunyuanVideoPipeline(
        text_encoder=_llama(22),
        tokenizer=_tokenizer(1024),
        transformer=transformer,
        vae=vae,
        scheduler=flow_euler(7.0),
        text_encoder_2=_clip(23),
        tokenizer_2=_clip_tokenizer(),
    )
    call = {"num_frames": 9, "height": 16, "width": 16}
    shape = (1, 16, 3, 2, 2)
    facts = _facts(
        "hunyuan-video",
        call,
        shape,
        layout="[B, C, T, H, W]",
        latent_frames="(num_frames - 1) // 4 + 1",
        vae_scale_factor_spatial=pipe.vae_scale_factor_spatial,
        vae_scale_factor_temporal=pipe.vae_scale_factor_temporal,
        prediction="flow velocity v = noise - x0",
        scheduler="euler",
        causal_vae=True,
    )
    return ready(pipe), facts


# ----------------------------------------------------------------------------- LTX-Video
def ltx():
    """``LTXPipeline``: 128 latent channels, ×32 spatial and ×8 temporal causal VAE (as the
    real one: pixels patchified 4×4, then three ×2 space-time downsamplings), latents
    *packed* to tokens ``[B, T·H·W, C]``; dynamic shifting (``mu``) with terminal σ 0.1."""
    from diffusers import AutoencoderKLLTXVideo, LTXPipeline, LTXVideoTransformer3DModel

    torch.manual_seed(30)
    transformer = LTXVideoTransformer3DModel(
        in_channels=128,
        out_channels=128,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=4,
        attention_head_dim=8,
        cross_attention_dim=32,
        num_layers=1,
        caption_channels=TEXT_DIM,
    )
    _refill_zeroed(transformer)
    torch.manual_seed(31)
    vae = AutoencoderKLLTXVideo(
        latent_channels=128,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True, False),
        decoder_spatio_temporal_scaling=(True, True, True, False),
        patch_size=4,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    vae.use_framewise_encoding = False
    vae.use_framewise_decoding = False
    # Lightricks/LTX-Video scheduler_config.json
    scheduler = flow_euler(
        1.0,
        use_dynamic_shifting=True,
        base_shift=0.95,
        max_shift=2.05,
        base_image_seq_len=1024,
        max_image_seq_len=4096,
        shift_terminal=0.1,
    )
    pipe = LTXPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=_t5(32),
        tokenizer=_tokenizer(),
        transformer=transformer,
    )
    call = {"num_frames": 9, "height": 64, "width": 64}
    s, t = pipe.vae_spatial_compression_ratio, pipe.vae_temporal_compression_ratio
    frames = (call["num_frames"] - 1) // t + 1
    h, w = call["height"] // s, call["width"] // s
    facts = _facts(
        "ltx-video",
        call,
        (1, frames * h * w, 128),
        unpacked_shape=(1, 128, frames, h, w),
        layout="packed tokens [B, T·H·W, C] (transformer patch 1×1×1)",
        latent_frames=f"(num_frames - 1) // {t} + 1",
        vae_scale_factor_spatial=s,
        vae_scale_factor_temporal=t,
        prediction="flow velocity v = noise - x0",
        scheduler="euler (dynamic shifting, shift_terminal 0.1)",
        causal_vae=True,
    )
    return ready(pipe), facts


# ----------------------------------------------------------------------------- Mochi
def mochi():
    """``MochiPipeline``: 12 latent channels, ×8 spatial and ×6 temporal VAE, and a scheduler
    with ``invert_sigmas=True`` (genmo/mochi-1-preview's config): its ``sigmas`` hold 1 − σ
    and the model predicts x0 − noise."""
    from diffusers import AutoencoderKLMochi, MochiPipeline, MochiTransformer3DModel

    torch.manual_seed(40)
    transformer = MochiTransformer3DModel(
        patch_size=2,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=2,
        pooled_projection_dim=16,
        in_channels=12,
        out_channels=None,
        qk_norm="rms_norm",
        text_embed_dim=TEXT_DIM,
        time_embed_dim=4,
        activation_fn="swiglu",
        max_sequence_length=256,
    )
    transformer.pos_frequencies.data = transformer.pos_frequencies.new_full(
        transformer.pos_frequencies.shape, 0
    )
    _refill_zeroed(transformer)
    torch.manual_seed(41)
    vae = AutoencoderKLMochi(
        latent_channels=12,
        out_channels=3,
        encoder_block_out_channels=(32, 32, 32, 32),
        decoder_block_out_channels=(32, 32, 32, 32),
        layers_per_block=(1, 1, 1, 1, 1),
    )
    pipe = MochiPipeline(
        scheduler=flow_euler(1.0, invert_sigmas=True),
        vae=vae,
        text_encoder=_t5(42),
        tokenizer=_tokenizer(),
        transformer=transformer,
    )
    call = {"num_frames": 7, "height": 16, "width": 16}
    facts = _facts(
        "mochi",
        call,
        (1, 12, 2, 2, 2),
        layout="[B, C, T, H, W]",
        latent_frames="(num_frames - 1) // 6 + 1",
        vae_scale_factor_spatial=pipe.vae_spatial_scale_factor,
        vae_scale_factor_temporal=pipe.vae_temporal_scale_factor,
        prediction="x0 - noise (minus the flow velocity); scheduler sigmas are 1 - σ",
        scheduler="euler (invert_sigmas=True)",
        causal_vae=True,
    )
    return ready(pipe), facts


# ----------------------------------------------------------------------------- CogVideoX
def cogvideox(scheduler: str = "ddim"):
    """``CogVideoXPipeline``: v-prediction on a zero-terminal-SNR VP schedule, frames-first
    latents ``[B, T, C, H, W]``; ``"ddim"`` = CogVideoXDDIMScheduler (CogVideoX-2b, snr shift
    3), ``"dpm"`` = CogVideoXDPMScheduler (CogVideoX-5b, snr shift 1, stochastic)."""
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXDPMScheduler,
        CogVideoXPipeline,
        CogVideoXTransformer3DModel,
    )

    torch.manual_seed(50)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,  # 3-D RoPE splits it t/h/w = 4/6/6
        in_channels=16,
        out_channels=16,
        time_embed_dim=2,
        text_embed_dim=TEXT_DIM,
        num_layers=1,
        sample_width=2,
        sample_height=2,
        sample_frames=9,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=226,
        use_rotary_positional_embeddings=scheduler == "dpm",  # CogVideoX-5b
    )
    _refill_zeroed(transformer)
    torch.manual_seed(51)
    vae = AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=16,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
        scaling_factor=1.15258426 if scheduler == "ddim" else 0.7,
    )
    # THUDM/CogVideoX-2b / -5b scheduler_config.json
    config = dict(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        clip_sample=False,
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        set_alpha_to_one=True,
        steps_offset=0,
        timestep_spacing="trailing",
    )
    if scheduler == "ddim":
        sched = CogVideoXDDIMScheduler(snr_shift_scale=3.0, **config)
    elif scheduler == "dpm":
        sched = CogVideoXDPMScheduler(snr_shift_scale=1.0, **config)
    else:
        raise ValueError(f"scheduler: 'ddim' or 'dpm', not {scheduler!r}")
    pipe = CogVideoXPipeline(
        tokenizer=_tokenizer(),
        text_encoder=_t5(52),
        vae=vae,
        transformer=transformer,
        scheduler=sched,
    )
    call = {"num_frames": 9, "height": 16, "width": 16}
    facts = _facts(
        "cogvideox",
        call,
        (1, 3, 16, 2, 2),
        layout="frames-first [B, T, C, H, W]",
        latent_frames="(num_frames - 1) // 4 + 1",
        vae_scale_factor_spatial=pipe.vae_scale_factor_spatial,
        vae_scale_factor_temporal=pipe.vae_scale_factor_temporal,
        prediction="v (VP): x0 = sqrt(ᾱ)·x - sqrt(1-ᾱ)·v",
        scheduler=scheduler,
        causal_vae=True,
    )
    return ready(pipe), facts


# ----------------------------------------------------------------------------- recording
def _copy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (tuple, list)):
        return type(value)(_copy(v) for v in value)
    return value


@contextmanager
def recording(pipe) -> Iterator[list[dict]]:
    """Record, in order, what one pipeline call gives its denoiser(s) and its scheduler.

    Yields a list that fills with events: ``{"event": "set_timesteps", "args", "kwargs",
    "timesteps", "sigmas"}`` (the schedule right after the call), ``{"event": "model",
    "component", "kwargs", "out"}`` per forward of ``transformer``/``transformer_2`` and
    ``{"event": "step", "args", "kwargs", "out", "sigmas", "step_index"}`` per
    ``scheduler.step`` (``step_index`` as it was before the step). Tensors are copied. The
    instance attributes added for this are removed afterwards.
    """
    events: list[dict] = []
    patched: list[tuple[Any, str]] = []

    def patch(obj: Any, name: str, wrapper: Callable) -> None:
        original = getattr(obj, name)
        setattr(obj, name, functools.wraps(original)(wrapper(original)))
        patched.append((obj, name))

    s = pipe.scheduler

    def set_timesteps(original):
        def wrapped(*a, **k):
            out = original(*a, **k)
            events.append(
                {
                    "event": "set_timesteps",
                    "args": _copy(a),
                    "kwargs": _copy(k),
                    "timesteps": _copy(s.timesteps),
                    "sigmas": _copy(getattr(s, "sigmas", None)),
                }
            )
            return out

        return wrapped

    def step(original):
        def wrapped(*a, **k):
            before = {
                "step_index": getattr(s, "step_index", None),
                "sigmas": _copy(getattr(s, "sigmas", None)),
            }
            out = original(*a, **k)
            events.append(
                {"event": "step", "args": _copy(a), "kwargs": _copy(k), "out": _copy(out), **before}
            )
            return out

        return wrapped

    def forward(component):
        def make(original):
            def wrapped(*a, **k):
                out = original(*a, **k)
                events.append(
                    {
                        "event": "model",
                        "component": component,
                        "args": _copy(a),
                        "kwargs": _copy(k),
                        "out": _copy(out),
                    }
                )
                return out

            return wrapped

        return make

    patch(s, "set_timesteps", set_timesteps)
    patch(s, "step", step)
    for name in ("transformer", "transformer_2"):
        model = getattr(pipe, name, None)
        if model is not None:
            patch(model, "forward", forward(name))
    try:
        yield events
    finally:
        for obj, name in patched:
            obj.__dict__.pop(name, None)


# ----------------------------------------------------------------------------- flow schedules
def rescale_flow_schedule(scheduler, sigma_start: float) -> None:
    """Make a flow scheduler's fresh schedule start at ``sigma_start`` instead of 1.

    Call it right after ``set_timesteps`` (before the pipeline reads ``timesteps``). Every σ
    is multiplied by ``sigma_start`` (the final 0 stays 0; for ``invert_sigmas`` schedulers,
    whose table holds 1 − σ, the table is mapped the same way in σ), and ``timesteps`` are
    recomputed as σ·``num_train_timesteps`` in the dtype and on the device the scheduler keeps
    them (float32 for FlowMatchEuler, int64, truncated, for UniPC). Nothing else needs to
    change: ``set_timesteps`` has just reset the step/begin indices and UniPC's history
    (``model_outputs``, ``lower_order_nums``, ``last_sample``), the number of steps (which
    UniPC's ``lower_order_final`` reads from ``len(timesteps)``) is unchanged, and the final
    entry (0, or ``final_sigmas_type="sigma_min"``'s last σ, scaled too) keeps its role.
    """
    sigmas = scheduler.sigmas.to(torch.float64)
    inverted = bool(getattr(scheduler.config, "invert_sigmas", False))
    sigma = 1.0 - sigmas if inverted else sigmas
    sigma = sigma * float(sigma_start)
    new = (1.0 - sigma if inverted else sigma).to(scheduler.sigmas.dtype)
    t = (new[:-1].to(torch.float64) * scheduler.config.num_train_timesteps).to(
        scheduler.timesteps.dtype
    )
    scheduler.sigmas = new.to(scheduler.sigmas.device)
    scheduler.timesteps = t.to(scheduler.timesteps.device)


def _zero_velocity(original):
    def forward(hidden_states, *a, return_dict=True, **k):
        return (torch.zeros_like(hidden_states),)

    return forward


def _oracle(pipe, clean: torch.Tensor):
    """A transformer stand-in that predicts the exact flow velocity towards ``clean`` from
    any point on the line (1 − σ)·clean + σ·noise: v = (x − clean)/σ, σ read from the
    scheduler at the step being taken."""
    s = pipe.scheduler

    def make(original):
        def forward(hidden_states, *a, return_dict=True, **k):
            i = s.step_index if s.step_index is not None else (s.begin_index or 0)
            sigma = float(s.sigmas[i])
            return ((hidden_states - clean.to(hidden_states)) / sigma,)

        return forward

    return make


@contextmanager
def _replaced_forward(pipe, make: Callable) -> Iterator[None]:
    models = [m for m in (pipe.transformer, getattr(pipe, "transformer_2", None)) if m is not None]
    for m in models:
        m.forward = make(m.forward)
    try:
        yield
    finally:
        for m in models:
            m.__dict__.pop("forward", None)


def _max(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.to(torch.float64) - b.to(torch.float64)).abs().max())


def verify_wan(scheduler: str = "euler", steps: int = 3, guidance_scale: float = 5.0) -> dict:
    """What one WanPipeline call (Wan 2.1, given ``latents``, ``output_type="latent"``) does
    between the transformer and the scheduler, as maximum absolute differences:

    * ``sample0_vs_latents``: the first ``step``'s sample is the ``latents`` passed (no scaling);
    * ``model_in_vs_sample``: each transformer call gets the step's sample as ``hidden_states``;
    * ``timestep_vs_sigma1000``: and ``timestep`` = σ_i·1000 (UniPC: int(σ_i·1000));
    * ``model_output_vs_cfg``: ``step`` gets uncond + g·(cond − uncond) of those calls;
    * ``euler_step``: (Euler) ``step`` returns x + (σ_next − σ)·v;
    * ``unipc_last_step_vs_x0``: (UniPC) the last ``step`` returns x − σ·v;
    * ``samples_chain``: each step's sample is the previous step's output;
    * ``final_vs_last_step``: the pipeline returns the last step's output;
    * ``zero_velocity_out_vs_latents``: with a transformer that predicts 0 the pipeline
      returns ``latents`` unchanged.
    """
    pipe, facts = wan21(scheduler)
    latents = torch.randn(facts["latent_shape"], generator=torch.Generator().manual_seed(1))
    with recording(pipe) as events:
        out = call(pipe, facts, steps=steps, latents=latents.clone(), guidance_scale=guidance_scale)
    sigmas = next(e for e in events if e["event"] == "set_timesteps")["sigmas"]
    models = [e for e in events if e["event"] == "model"]
    step_events = [e for e in events if e["event"] == "step"]
    r: dict[str, float] = {"steps": len(step_events), "model_calls": len(models)}
    r["sample0_vs_latents"] = _max(step_events[0]["args"][2], latents)
    worst = {"model_in": 0.0, "timestep": 0.0, "cfg": 0.0, "euler": 0.0, "chain": 0.0}
    for i, e in enumerate(step_events):
        v, _, x = e["args"][:3]
        cond, uncond = models[2 * i], models[2 * i + 1]  # cond first, then uncond
        for m in (cond, uncond):
            worst["model_in"] = max(worst["model_in"], _max(m["kwargs"]["hidden_states"], x))
            t_model = m["kwargs"]["timestep"].to(torch.float64)
            expected_t = sigmas[i].to(torch.float64) * 1000
            if scheduler == "unipc":
                expected_t = torch.floor(expected_t)
            worst["timestep"] = max(worst["timestep"], float((t_model - expected_t).abs().max()))
        c, u = cond["out"][0], uncond["out"][0]
        worst["cfg"] = max(worst["cfg"], _max(v, u + guidance_scale * (c - u)))
        prev = e["out"][0]
        if scheduler == "euler":
            expected = x + (sigmas[i + 1] - sigmas[i]) * v
            worst["euler"] = max(worst["euler"], _max(prev, expected))
        if i:
            worst["chain"] = max(worst["chain"], _max(x, step_events[i - 1]["out"][0]))
    r["model_in_vs_sample"] = worst["model_in"]
    r["timestep_vs_sigma1000"] = worst["timestep"]
    r["model_output_vs_cfg"] = worst["cfg"]
    if scheduler == "euler":
        r["euler_step"] = worst["euler"]
    else:
        v, _, x = step_events[-1]["args"][:3]
        r["unipc_last_step_vs_x0"] = _max(step_events[-1]["out"][0], x - sigmas[-2] * v)
    r["samples_chain"] = worst["chain"]
    r["final_vs_last_step"] = _max(out, step_events[-1]["out"][0])
    with _replaced_forward(pipe, _zero_velocity):
        still = call(pipe, facts, steps=steps, latents=latents.clone())
    r["zero_velocity_out_vs_latents"] = _max(still, latents)
    return r


def verify_flow_step(name: str, steps: int = 3) -> dict:
    """For a FlowMatchEuler pipeline of ``BUILDERS``: every ``step`` is
    x + (sigmas[i+1] − sigmas[i])·model_output in the scheduler's own table (``euler_step``;
    for Mochi's ``invert_sigmas`` table that is x − (σ_next − σ)·output: the model predicts
    x0 − noise), the transformer gets ``timesteps[i]`` (``timestep_vs_schedule``; Mochi's are
    (1 − σ)·1000) and the latents passed come back untouched with a zero-output transformer
    (``zero_velocity_out_vs_latents``; LTX's are packed tokens)."""
    pipe, facts = BUILDERS[name]()
    latents = torch.randn(facts["latent_shape"], generator=torch.Generator().manual_seed(3))
    with recording(pipe) as events:
        call(pipe, facts, steps=steps, latents=latents.clone())
    sched = next(e for e in events if e["event"] == "set_timesteps")
    table, timesteps = sched["sigmas"], sched["timesteps"]
    models = [e for e in events if e["event"] == "model"]
    step_events = [e for e in events if e["event"] == "step"]
    r = {"steps": len(step_events), "model_calls": len(models)}
    r["sigmas"] = [round(float(x), 6) for x in table]
    r["timesteps"] = [round(float(x), 3) for x in timesteps]
    r["euler_step"] = max(
        _max(e["out"][0], e["args"][2] + (table[i + 1] - table[i]) * e["args"][0])
        for i, e in enumerate(step_events)
    )
    per_step = len(models) // len(step_events)
    r["timestep_vs_schedule"] = max(
        _max(m["kwargs"]["timestep"], timesteps[j // per_step]) for j, m in enumerate(models)
    )
    r["sample0_vs_latents"] = _max(step_events[0]["args"][2], latents)
    with _replaced_forward(pipe, _zero_velocity):
        still = call(pipe, facts, steps=steps, latents=latents.clone())
    r["zero_velocity_out_vs_latents"] = _max(still, latents)
    return r


def verify_wan_normalization(seed: int = 0) -> dict:
    """The space WanPipeline samples in is the VAE's, normalized per channel:
    Z = (mode(vae.encode(video)) − latents_mean) / latents_std. Passing Z as ``latents`` with a
    zero-velocity transformer and ``output_type="pt"`` decodes exactly what ``vae.decode`` makes
    of the raw latent (``decode_vs_vae``)."""
    pipe, facts = wan21()
    vae = pipe.vae
    c = facts["call"]
    g = torch.Generator().manual_seed(seed)
    video = torch.rand(1, 3, c["num_frames"], c["height"], c["width"], generator=g) * 2 - 1
    with torch.no_grad():
        raw = vae.encode(video).latent_dist.mode()
        mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
        std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
        z = (raw - mean) / std
        direct = pipe.video_processor.postprocess_video(vae.decode(raw).sample, output_type="pt")
    with _replaced_forward(pipe, _zero_velocity):
        decoded = call(pipe, facts, latents=z, output_type="pt")
    return {"decode_vs_vae": _max(decoded, direct), "latent_std": float(z.std())}


def verify_rescale(scheduler: str = "euler", sigma_start: float = 0.9, steps: int = 4) -> dict:
    """Rescaling demonstration on a WanPipeline whose transformer is an oracle for one clean
    latent Z: started from x = (1 − σ_start)·Z + σ_start·noise with the schedule rescaled
    (``rescale_flow_schedule`` right after ``set_timesteps``), the pipeline lands on Z. Returns
    the first and last σ the scheduler used and the final error."""
    pipe, facts = wan21(scheduler)
    s = pipe.scheduler
    g = torch.Generator().manual_seed(2)
    clean = torch.randn(facts["latent_shape"], generator=g)
    noise = torch.randn(facts["latent_shape"], generator=g)
    original = s.set_timesteps

    def set_timesteps(*a, **k):
        original(*a, **k)
        rescale_flow_schedule(s, sigma_start)

    s.set_timesteps = set_timesteps
    try:
        start = (1 - sigma_start) * clean + sigma_start * noise
        with _replaced_forward(pipe, _oracle(pipe, clean)), recording(pipe) as events:
            out = call(pipe, facts, steps=steps, latents=start, guidance_scale=1.0)
    finally:
        s.__dict__.pop("set_timesteps", None)
    used = [float(e["sigmas"][e["step_index"] if e["step_index"] is not None else 0])
            for e in events if e["event"] == "step"]  # fmt: skip
    return {
        "sigmas": [round(x, 6) for x in used],
        "final_sigma": float(s.sigmas[-1]),
        "timesteps": [round(float(t), 3) for t in s.timesteps],
        "final_vs_clean": _max(out, clean),
    }


# ----------------------------------------------------------------------------- registry
BUILDERS: dict[str, Callable[[], tuple[Any, dict]]] = {
    "wan2.1": wan21,
    "wan2.1-unipc": functools.partial(wan21, "unipc"),
    "wan2.2-a14b": wan22_a14b,
    "wan2.2-a14b-unipc": functools.partial(wan22_a14b, "unipc"),
    "wan2.2-ti2v-5b": wan22_ti2v_5b,
    "wan2.2-ti2v-5b-unipc": functools.partial(wan22_ti2v_5b, "unipc"),
    "hunyuan-video": hunyuan_video,
    "ltx-video": ltx,
    "mochi": mochi,
    "cogvideox-ddim": cogvideox,
    "cogvideox-dpm": functools.partial(cogvideox, "dpm"),
}


def call(pipe, facts: dict, *, steps: int = 2, seed: int = 0, **kwargs):
    """One call of ``pipe`` with the facts' arguments, latents out."""
    args = dict(
        prompt="a",
        num_inference_steps=steps,
        output_type="latent",
        generator=torch.Generator().manual_seed(seed),
        **facts["call"],
    )
    args.update(kwargs)
    with torch.no_grad():
        return pipe(**args).frames


def smoke(names: list[str] | None = None) -> dict[str, dict]:
    """Build each pipeline and call it once; check the latents' shape. Returns per name the
    seconds to build and to call, and the shape."""
    results = {}
    for name in names or list(BUILDERS):
        t0 = time.perf_counter()
        pipe, facts = BUILDERS[name]()
        t1 = time.perf_counter()
        out = call(pipe, facts)
        t2 = time.perf_counter()
        if tuple(out.shape) != facts["latent_shape"]:
            raise AssertionError(f"{name}: {tuple(out.shape)} != {facts['latent_shape']}")
        if not torch.isfinite(out).all():
            raise AssertionError(f"{name}: non-finite latents")
        results[name] = {"build_s": t1 - t0, "call_s": t2 - t1, "shape": tuple(out.shape)}
    return results


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    torch.set_num_threads(1)
    if sys.argv[1:2] == ["--verify"]:
        for kind in ("euler", "unipc"):
            print(f"verify_wan({kind!r}):", verify_wan(kind))
        print("verify_wan_normalization():", verify_wan_normalization())
        for name in ("wan2.2-a14b", "wan2.2-ti2v-5b", "hunyuan-video", "ltx-video", "mochi"):
            print(f"verify_flow_step({name!r}):", verify_flow_step(name))
        for kind in ("euler", "unipc"):
            print(f"verify_rescale({kind!r}):", verify_rescale(kind))
        sys.exit(0)
    for name, r in smoke(sys.argv[1:] or None).items():
        print(f"{name:22s} build {r['build_s']:5.2f} s  call {r['call_s']:5.2f} s  {r['shape']}")
