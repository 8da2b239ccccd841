"""What rectification costs next to the stock diffusers pipeline: time, memory, syncs.

    python -m bench.gpu_cost [--device cuda] [--pairs 3] [--frames 16] [--size 512]
        [--steps 25] [--models sd15,sdxl,modelscope,wan2.1-1.3b]
        [--schedulers ddim,euler,euler_a,dpmpp_2m,unipc,lcm,flow_euler,flow_unipc]
        [--wan-frames 33] [--wan-size 480x832] [--json PATH]
    python -m bench.gpu_cost --tiny      # tiny models on the CPU, seconds: keeps it working

Full-size pipelines with random weights, built from diffusers configs (nothing is
downloaded): AnimateDiff on SD1.5's UNet with the default ``MotionAdapter()``,
AnimateDiff-SDXL on SDXL's UNet with the SDXL beta motion adapter (at ``--sdxl-size``,
768 px by default), and ModelScope's ``UNet3DConditionModel``. The text encoders have the
real widths (CLIP ViT-L 768; OpenCLIP bigG 1280 + ViT-L for SDXL; 1024 for ModelScope)
but only ``TEXT_LAYERS`` layers: text encoding runs once per video, in both runs alike,
so the ratio is if anything slightly pessimistic. The VAE is tiny (4 levels, so its scale
factor is 8): the picture's latent and the noise are passed in (``reference_latent=``,
``noise=``) and latents come out (``output_type="latent"``), so it never runs.

The flow-matching row, ``wan2.1-1.3b``, is ``WanPipeline`` with Wan 2.1 T2V 1.3B's
``WanTransformer3DModel`` (``WAN21_T2V_1_3B``: 30 layers, 12 heads × 128, ffn 8960, text
4096; 1.42 B parameters, the config diffusers' scripts/convert_wan_to_diffusers.py writes
for Wan-AI/Wan2.1-T2V-1.3B-Diffusers), in bfloat16 on CUDA (as Wan ships), at
``--wan-size`` 480×832 and ``--wan-frames`` 33 (9 latent frames); UMT5-XXL's width (4096,
64 heads, ffn 10240) with ``TEXT_LAYERS`` layers; a tiny ``AutoencoderKLWan`` (z_dim 16,
×8 spatial, ×4 temporal, Wan 2.1's latent statistics) that never runs. Its schedulers
are ``FLOW_SCHEDULERS``: ``FlowMatchEulerDiscreteScheduler`` and
``UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True)``,
both with shift 3 (Wan 2.1 at 480p). Rectified runs start at the default ``sigma_start``
(0.95): the stock run is given the same start latents and runs the same number of steps
on its own (unscaled) schedule, which costs the same.

For each model and scheduler: a warm-up (one stock video, one rectified), then
``--pairs`` pairs, alternating which runs first, of the stock pipeline started from the
latents ``image_to_video`` would start from (``start_latents``) and ``image_to_video``
itself, with the same noise and seed, the paper's parameters and CFG 7.5. Reported:
median seconds per video, their ratio, peak memory of each run (CUDA), and
synchronisations per video, counted over one more (untimed) video of each kind:

* on CUDA, ``torch.cuda.set_sync_debug_mode("warn")`` warnings over the whole call
  (diffusers' own included, hence "added" = rectified − stock), and those raised inside
  the hook's per-step code (the scheduler's own ``step`` excluded);
* on every device, ``bench.syncs.SyncRecorder`` over the whole ``image_to_video`` call
  with the host's code (the pipeline's ``__call__``, the scheduler's own ``set_timesteps``
  and ``step``) paused: the synchronising calls made by project code, with their sites.
  On a CPU it is the only count ("project-code synchronising calls (CPU proxy)"); a read
  of a tensor counts even where, on a GPU, that tensor would live on the host.

Targets (issue 17, judged on CUDA only): rectified/stock time ≤ 1.005; at most 2 added
synchronisations per video and none in the per-step code; peak memory at most one
latent (``[B, C, L, h, w]`` in the pipeline's dtype) above the stock run's.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.syncs import SyncRecorder
from lib_rectify import DEFAULT_SIGMA_START

UNET_MODELS = ("sd15", "sdxl", "modelscope")
FLOW_MODELS = ("wan2.1-1.3b",)
MODELS = UNET_MODELS + FLOW_MODELS
#: Benchmark name -> (diffusers class, extra config): the UNet models' (SD's training schedule).
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "lcm": ("LCMScheduler", {}),
}
#: Wan 2.1's flow shift at 480p (the Wan-AI ``*-Diffusers`` scheduler configs; 5 for 720p).
WAN_FLOW_SHIFT = 3.0
#: The flow-matching models' schedulers: their complete configs.
FLOW_SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "flow_euler": ("FlowMatchEulerDiscreteScheduler", {"shift": WAN_FLOW_SHIFT}),
    "flow_unipc": (
        "UniPCMultistepScheduler",
        {
            "prediction_type": "flow_prediction",
            "use_flow_sigmas": True,
            "num_train_timesteps": 1000,
            "flow_shift": WAN_FLOW_SHIFT,
        },
    ),
}
ALL_SCHEDULERS = (*SCHEDULERS, *FLOW_SCHEDULERS)
#: Wan-AI/Wan2.1-T2V-1.3B-Diffusers' transformer (diffusers' convert_wan_to_diffusers.py,
#: "Wan-T2V-1.3B"): dim 1536 = 12 heads × 128, 1.42 B parameters.
WAN21_T2V_1_3B: dict[str, Any] = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 12,
    "attention_head_dim": 128,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "ffn_dim": 8960,
    "num_layers": 30,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "image_dim": None,
    "added_kv_proj_dim": None,
    "rope_max_seq_len": 1024,
}
PARAMS = {"omega": "paper", "tau": [0.0, 0.6]}
#: Where flow models start: PARAMS leave ``sigma_start`` at its default (0.95).
SIGMA_START = DEFAULT_SIGMA_START
GUIDANCE = 7.5
PROMPT, NEGATIVE = "a cat walking in the garden, best quality", "low quality, blurry"
#: Layers of each text encoder in the full-size models (the real ones have 12/32/24;
#: Wan's UMT5-XXL 24).
TEXT_LAYERS = 2
TARGET_RATIO = 1.005
TARGET_ADDED_SYNCS = 2
TARGET_EXTRA_LATENTS = 1.0
SYNC_WARNING = "synchroniz"  # torch's "called a synchronizing CUDA operation"


# ----------------------------------------------------------------------------- models
def byte_tokenizer(folder: Path):
    """A CLIP tokenizer with a byte-level vocabulary (no merges): no hub needed."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    chars = [chr(c) for c in cs]
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": i + 256 for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = 512
    vocab["<|endoftext|>"] = 513
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77
    )


def clip_text_encoder(hidden: int, heads: int, layers: int, *, projection: bool = False, seed: int):
    """A random CLIP text encoder of the given width and depth (vocabulary of byte_tokenizer)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=514,
        hidden_size=hidden,
        intermediate_size=hidden * 4 if hidden > 64 else 37,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=77,
        projection_dim=hidden,
        bos_token_id=512,
        eos_token_id=513,
        pad_token_id=513,
    )
    torch.manual_seed(seed)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def _vae():
    """Four levels (scale factor 8) of 32 channels: never run, latents go in and out."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=[32] * 4,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=32,
    )


def schedulers_for(model: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """The schedulers a model is measured with: FLOW_SCHEDULERS for Wan, else SCHEDULERS."""
    return FLOW_SCHEDULERS if model in FLOW_MODELS else SCHEDULERS


def scheduler(name: str):
    """``name``: a key of SCHEDULERS, with SD's training schedule (the three UNet models'),
    or of FLOW_SCHEDULERS, as configured there."""
    import diffusers

    if name in FLOW_SCHEDULERS:
        cls, config = FLOW_SCHEDULERS[name]
        return getattr(diffusers, cls)(**config)
    cls, extra = SCHEDULERS[name]
    config = dict(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000
    )
    if cls in ("DDIMScheduler", "LCMScheduler"):
        config.update(clip_sample=False, steps_offset=1, set_alpha_to_one=False)
    return getattr(diffusers, cls)(**config, **extra)


def sd15(tiny: bool):
    """AnimateDiffPipeline: SD1.5's UNet config + the default MotionAdapter (v1.5)."""
    from diffusers import AnimateDiffPipeline, MotionAdapter, UNet2DConditionModel

    torch.manual_seed(1)
    if tiny:
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=1,
            sample_size=4,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
            norm_num_groups=2,
        )
        adapter = MotionAdapter(
            block_out_channels=(32, 64),
            motion_layers_per_block=1,
            motion_norm_num_groups=2,
            motion_num_attention_heads=4,
        )
        encoder = clip_text_encoder(32, 4, 2, seed=5)
    else:
        unet = UNet2DConditionModel(
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            sample_size=64,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=768,
            attention_head_dim=8,
        )
        adapter = MotionAdapter()  # animatediff-motion-adapter-v1-5-2's config
        encoder = clip_text_encoder(768, 12, TEXT_LAYERS, seed=5)  # CLIP ViT-L/14
    with tempfile.TemporaryDirectory() as tmp:
        return AnimateDiffPipeline(
            vae=_vae(),
            text_encoder=encoder,
            tokenizer=byte_tokenizer(Path(tmp)),
            unet=unet,
            motion_adapter=adapter,
            scheduler=scheduler("ddim"),
        )


def sdxl(tiny: bool):
    """AnimateDiffSDXLPipeline: SDXL base's UNet config + the SDXL beta motion adapter."""
    from diffusers import AnimateDiffSDXLPipeline, MotionAdapter, UNet2DConditionModel

    torch.manual_seed(3)
    if tiny:
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=1,
            sample_size=4,
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
        adapter = MotionAdapter(
            block_out_channels=(32, 64),
            motion_layers_per_block=1,
            motion_norm_num_groups=2,
            motion_num_attention_heads=4,
            use_motion_mid_block=False,
        )
        encoders = (
            clip_text_encoder(32, 4, 2, seed=5),
            clip_text_encoder(32, 4, 2, projection=True, seed=6),
        )
    else:
        unet = UNet2DConditionModel(
            block_out_channels=(320, 640, 1280),
            layers_per_block=2,
            sample_size=128,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(5, 10, 20),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=256,
            transformer_layers_per_block=(1, 2, 10),
            projection_class_embeddings_input_dim=2816,  # 6·256 time ids + 1280 pooled
            cross_attention_dim=2048,  # 768 (ViT-L) + 1280 (bigG)
        )
        # guoyww/animatediff-motion-adapter-sdxl-beta: three levels, no mid block.
        adapter = MotionAdapter(
            block_out_channels=(320, 640, 1280),
            motion_layers_per_block=2,
            motion_num_attention_heads=8,
            motion_norm_num_groups=32,
            motion_max_seq_length=32,
            use_motion_mid_block=False,
        )
        encoders = (
            clip_text_encoder(768, 12, TEXT_LAYERS, seed=5),  # CLIP ViT-L/14
            clip_text_encoder(1280, 20, TEXT_LAYERS, projection=True, seed=6),  # OpenCLIP bigG/14
        )
    with tempfile.TemporaryDirectory() as tmp:
        return AnimateDiffSDXLPipeline(
            vae=_vae(),
            text_encoder=encoders[0],
            text_encoder_2=encoders[1],
            tokenizer=byte_tokenizer(Path(tmp) / "1"),
            tokenizer_2=byte_tokenizer(Path(tmp) / "2"),
            unet=unet,
            motion_adapter=adapter,
            scheduler=scheduler("ddim"),
        )


def modelscope(tiny: bool):
    """TextToVideoSDPipeline: ali-vilab/text-to-video-ms-1.7b's UNet3DConditionModel config."""
    from diffusers import UNet3DConditionModel
    from diffusers.pipelines.deprecated.text_to_video_synthesis import TextToVideoSDPipeline

    torch.manual_seed(7)
    if tiny:
        unet = UNet3DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=1,
            sample_size=4,
            down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
            up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
            cross_attention_dim=32,
            attention_head_dim=4,
            norm_num_groups=2,
        )
        encoder = clip_text_encoder(32, 4, 2, seed=5)
    else:
        unet = UNet3DConditionModel(
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            sample_size=32,
            down_block_types=("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",),
            up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3,
            cross_attention_dim=1024,
            attention_head_dim=64,
        )
        encoder = clip_text_encoder(1024, 16, TEXT_LAYERS, seed=5)  # OpenCLIP ViT-H/14
    with tempfile.TemporaryDirectory() as tmp:
        return TextToVideoSDPipeline(
            vae=_vae(),
            text_encoder=encoder,
            tokenizer=byte_tokenizer(Path(tmp)),
            unet=unet,
            scheduler=scheduler("ddim"),
        )


def umt5_text_encoder(hidden: int, heads: int, d_kv: int, d_ff: int, layers: int, *, seed: int):
    """A random UMT5 encoder (Wan's text encoder; gated GELU as umt5-xxl), byte_tokenizer's
    vocabulary."""
    from transformers import UMT5Config, UMT5EncoderModel

    config = UMT5Config(
        vocab_size=514,
        d_model=hidden,
        d_kv=d_kv,
        d_ff=d_ff,
        num_layers=layers,
        num_heads=heads,
        relative_attention_num_buckets=32 if hidden > 64 else 8,
        feed_forward_proj="gated-gelu",
        pad_token_id=513,
        eos_token_id=513,
        decoder_start_token_id=0,
    )
    torch.manual_seed(seed)
    return UMT5EncoderModel(config)


def _wan_vae():
    """Wan 2.1's VAE layout, tiny: z_dim 16, ×8 spatial, ×4 temporal (causal), Wan 2.1's
    latent statistics (the class defaults). Never runs: latents go in and out."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    return AutoencoderKLWan(
        base_dim=3,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )


def wan21(tiny: bool):
    """WanPipeline: Wan 2.1 T2V 1.3B's transformer (``WAN21_T2V_1_3B``), UMT5-XXL's width."""
    from diffusers import WanPipeline, WanTransformer3DModel

    torch.manual_seed(11)
    if tiny:
        config = dict(
            WAN21_T2V_1_3B,
            num_attention_heads=2,
            attention_head_dim=12,
            text_dim=32,
            ffn_dim=32,
            num_layers=2,
            rope_max_seq_len=32,
        )
        encoder = umt5_text_encoder(32, 4, 8, 37, 2, seed=10)
    else:
        config = WAN21_T2V_1_3B
        encoder = umt5_text_encoder(4096, 64, 64, 10240, TEXT_LAYERS, seed=10)  # umt5-xxl
    transformer = WanTransformer3DModel(**config)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = byte_tokenizer(Path(tmp))
    tokenizer.model_max_length = 512  # WanPipeline's max_sequence_length
    return WanPipeline(
        tokenizer=tokenizer,
        text_encoder=encoder,
        vae=_wan_vae(),
        transformer=transformer,
        scheduler=scheduler("flow_euler"),
    )


BUILDERS: dict[str, Callable[[bool], Any]] = {
    "sd15": sd15,
    "sdxl": sdxl,
    "modelscope": modelscope,
    "wan2.1-1.3b": wan21,
}


def model_dtype(model: str, device: torch.device) -> torch.dtype:
    """float16 on CUDA (bfloat16 for Wan, as it ships), float32 on a CPU."""
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if model in FLOW_MODELS else torch.float16


def build(model: str, *, tiny: bool, device: torch.device, dtype: torch.dtype):
    """The pipeline, its weights made on ``device`` (fast random init on a GPU), in eval mode."""
    from diffusers.utils import logging as diffusers_logging

    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # "modules ... kept in float32: []", deprecations
    try:
        with torch.device(device):
            pipe = BUILDERS[model](tiny)
        pipe.to(device=device, dtype=dtype)
    finally:
        diffusers_logging.set_verbosity(verbosity)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()  # built from configs they start in training mode (dropout)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ------------------------------------------------------------------------ measuring
@dataclass
class Row:
    model: str
    scheduler: str
    dtype: str = ""
    frames: int = 0  # num_frames given to the pipeline (Wan samples (F − 1)//4 + 1 latent frames)
    height: int = 0
    width: int = 0
    latent_shape: list[int] = field(default_factory=list)  # the noise's, [B, C, L, h, w]
    stock_s: list[float] = field(default_factory=list)
    rectified_s: list[float] = field(default_factory=list)
    stock_median_s: float = 0.0
    rectified_median_s: float = 0.0
    ratio: float = 0.0
    pair_ratios: list[float] = field(default_factory=list)
    peak_stock_bytes: int | None = None
    peak_rectified_bytes: int | None = None
    latent_bytes: int = 0
    syncs_kind: str = ""
    syncs_stock: int = 0
    syncs_rectified: int = 0
    syncs_in_steps: int = 0
    project_sites: list[str] = field(default_factory=list)  # SyncRecorder, per video
    project_sites_in_steps: list[str] = field(default_factory=list)
    stock_shape: list[int] = field(default_factory=list)
    rectified_shape: list[int] = field(default_factory=list)
    rectified_steps: list[int] = field(default_factory=list)
    finite: bool = True  # both outputs (random fp16 weights could overflow; timing is unaffected)
    verdict: dict[str, bool] | None = None


class _Case:
    """One model × scheduler: the two calls, from the same picture latent and noise."""

    def __init__(
        self, pipe: Any, args: argparse.Namespace, shape: tuple[int, int, int], device, dtype
    ) -> None:
        self.pipe, self.args, self.device = pipe, args, device
        self.frames, self.height, self.width = shape
        denoiser = getattr(pipe, "unet", None) or pipe.transformer
        scale = getattr(pipe, "vae_scale_factor", None) or pipe.vae_scale_factor_spatial
        h, w = self.height // scale, self.width // scale
        temporal = getattr(pipe, "vae_scale_factor_temporal", None)  # Wan's causal VAE
        latent_frames = (self.frames - 1) // temporal + 1 if temporal else self.frames
        channels = denoiser.config.in_channels
        g = torch.Generator("cpu").manual_seed(0)
        self.reference = torch.randn(1, channels, h, w, generator=g).to(device, dtype)
        self.noise = torch.randn(1, channels, latent_frames, h, w, generator=g).to(device, dtype)
        self.latent_bytes = self.noise.numel() * self.noise.element_size()

    def start_latents(self) -> torch.Tensor:
        """What ``image_to_video`` starts from, for the stock run. Made just before each
        stock run and dropped after it (the rectified run makes its own): both runs hold
        the same tensors, so their peak memory compares."""
        from lib_rectify_diffusers import start_latents

        clean = self.reference[:, :, None].expand(-1, -1, self.noise.shape[2], -1, -1)
        start, _ = start_latents(
            self.pipe.scheduler,
            clean,
            self.noise,
            num_inference_steps=self.args.steps,
            device=self.device,
            sigma_start=SIGMA_START,  # as image_to_video: flow schedules start there
        )
        return start

    def _common(self) -> dict[str, Any]:
        return dict(
            prompt=PROMPT,
            negative_prompt=NEGATIVE,
            num_frames=self.frames,
            height=self.height,
            width=self.width,
            num_inference_steps=self.args.steps,
            guidance_scale=GUIDANCE,
            generator=torch.Generator(self.device).manual_seed(1),
            output_type="latent",
        )

    def stock(self, latents: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = self.pipe(latents=latents, **self._common())
        return out.frames if hasattr(out, "frames") else out[0]

    def rectified(self, pipe: Any = None) -> torch.Tensor:
        from lib_rectify_diffusers import image_to_video

        out = image_to_video(
            pipe or self.pipe,
            params=PARAMS,
            reference_latent=self.reference,
            noise=self.noise,
            **self._common(),
        )
        return out.frames if hasattr(out, "frames") else out[0]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any, int | None]:
    """Seconds, result, and peak memory allocated during the call (CUDA; else None)."""
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    result = fn()
    _sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return seconds, result, peak


@contextlib.contextmanager
def _patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    saved = owner.__dict__[name]
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, saved)


class _PausedPipeline:
    """The pipeline, its own ``__call__`` run with ``recorder`` paused (host code)."""

    def __init__(self, pipe: Any, recorder: SyncRecorder) -> None:
        object.__setattr__(self, "_pipe", pipe)
        object.__setattr__(self, "_recorder", recorder)

        @functools.wraps(pipe.__call__)
        def call(*a: Any, **k: Any) -> Any:
            with recorder.paused():
                return pipe(*a, **k)

        object.__setattr__(self, "__call__", call)

    def __call__(self, *a: Any, **k: Any) -> Any:
        return object.__getattribute__(self, "__dict__")["__call__"](*a, **k)

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_pipe"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_pipe"), name, value)


def paused_pipeline(pipe: Any, recorder: SyncRecorder) -> _PausedPipeline:
    """A ``_PausedPipeline`` whose class bears the pipeline's class name: the adapter tells
    the transformer pipelines (``WanPipeline``) apart by that name."""
    named = type(type(pipe).__name__, (_PausedPipeline,), {"__doc__": _PausedPipeline.__doc__})
    return named(pipe, recorder)


#: Reads seen at the function level; the dispatcher then sees the same read once more.
_FUNCTION_READS = {
    "item()",
    "float(tensor)",
    "int(tensor)",
    "bool(tensor)",
    "tensor used as an index",
}
_DISPATCH_READ = "a tensor's value read on the host"


def operations(recorder: SyncRecorder) -> list[str]:
    """The recorder's sites, one per synchronising operation: ``float(t)`` is recorded
    twice (``float(tensor)``, then the dispatcher's read at the same line); keep one."""
    kept, previous = [], None
    for site in recorder.sites:
        if (
            site.what == _DISPATCH_READ
            and previous is not None
            and previous.where == site.where
            and previous.what in _FUNCTION_READS
        ):
            previous = None
            continue
        kept.append(str(site))
        previous = site
    return kept


def project_syncs(case: _Case) -> tuple[list[str], list[str], torch.Tensor]:
    """SyncRecorder over one whole rectified call: (operations per video, those in the
    hook's steps, output). The host's code is paused: the pipeline's ``__call__``, the
    scheduler's own ``set_timesteps`` and ``step``; the hook's methods are watched."""
    from lib_rectify_diffusers.hook import SchedulerHook

    outer, schedule, steps = SyncRecorder(), SyncRecorder(), SyncRecorder()
    sched = case.pipe.scheduler
    own = sched.__dict__.get("set_timesteps")
    own_set = sched.set_timesteps

    @functools.wraps(own_set)
    def paused_set_timesteps(*a, **k):
        with outer.paused():
            return own_set(*a, **k)

    hooked_step = SchedulerHook.step
    hooked_schedule = SchedulerHook.after_set_timesteps

    def step(self, original, *a, **k):
        def host_step(*aa, **kk):
            with steps.paused():
                return original(*aa, **kk)

        with steps.watching():
            return hooked_step(self, host_step, *a, **k)

    def after_set_timesteps(self):
        with schedule.watching():
            return hooked_schedule(self)

    sched.set_timesteps = paused_set_timesteps
    try:
        with (
            _patched(SchedulerHook, "step", step),
            _patched(SchedulerHook, "after_set_timesteps", after_set_timesteps),
            outer.watching(),
        ):
            out = case.rectified(paused_pipeline(case.pipe, outer))
    finally:
        if own is None:
            sched.__dict__.pop("set_timesteps", None)
        else:
            sched.set_timesteps = own
    in_steps = operations(steps)
    return operations(outer) + operations(schedule) + in_steps, in_steps, out


def cuda_syncs(case: _Case) -> tuple[int, int, int]:
    """``set_sync_debug_mode("warn")`` counts: (stock video, rectified video, inside the
    hook's per-step code of the rectified video, the scheduler's own step excluded)."""
    from lib_rectify_diffusers.hook import SchedulerHook

    hooked_step = SchedulerHook.step
    in_steps = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        def count() -> int:
            return sum(SYNC_WARNING in str(w.message) for w in caught)

        def step(self, original, *a, **k):
            nonlocal in_steps
            host = 0

            def host_step(*aa, **kk):
                nonlocal host
                before = count()
                try:
                    return original(*aa, **kk)
                finally:
                    host += count() - before

            before = count()
            try:
                return hooked_step(self, host_step, *a, **k)
            finally:
                in_steps += count() - before - host

        previous = torch.cuda.get_sync_debug_mode()
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            latents = case.start_latents()  # not counted: the stock pipeline is given it
            torch.cuda.synchronize()
            before = count()
            case.stock(latents)
            del latents
            stock = count() - before
            before = count()
            with _patched(SchedulerHook, "step", step):
                case.rectified()
            rectified = count() - before
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    return stock, rectified, in_steps


def video_shape(model: str, args: argparse.Namespace) -> tuple[int, int, int]:
    """(frames, height, width) a model's videos are made at."""
    if model in FLOW_MODELS:
        return args.wan_frames, args.wan_height, args.wan_width
    size = args.sdxl_size if model == "sdxl" else args.size
    return args.frames, size, size


def measure(pipe: Any, model: str, sched: str, args: argparse.Namespace, device, dtype) -> Row:
    pipe.scheduler = scheduler(sched)
    case = _Case(pipe, args, video_shape(model, args), device, dtype)
    row = Row(
        model,
        sched,
        dtype=str(dtype).replace("torch.", ""),
        frames=case.frames,
        height=case.height,
        width=case.width,
        latent_shape=list(case.noise.shape),
        latent_bytes=case.latent_bytes,
    )

    def run(kind: str) -> tuple[float, list[int], bool, int | None]:
        """One video: seconds, output shape, whether finite, peak memory. Nothing of it
        is kept alive into the next run (the output is checked here, untimed)."""
        if kind == "stock":
            latents = case.start_latents()
            seconds, out, peak = _timed(lambda: case.stock(latents), device)
        else:
            seconds, out, peak = _timed(case.rectified, device)
        return seconds, list(out.shape), bool(torch.isfinite(out).all()), peak

    run("stock")  # warm-up
    run("rectified")
    peaks: dict[str, list[int]] = {"stock": [], "rectified": []}
    shapes: dict[str, list[int]] = {}
    for pair in range(args.pairs):
        order = ("stock", "rectified") if pair % 2 == 0 else ("rectified", "stock")
        times = {}
        for kind in order:
            seconds, shapes[kind], finite, peak = run(kind)
            times[kind] = seconds
            row.finite = row.finite and finite
            if peak is not None:
                peaks[kind].append(peak)
        row.stock_s.append(times["stock"])
        row.rectified_s.append(times["rectified"])
        row.pair_ratios.append(times["rectified"] / times["stock"])
    row.rectified_steps = list(pipe.noise_rectification["rectified_steps"])
    row.stock_shape, row.rectified_shape = shapes["stock"], shapes["rectified"]
    row.stock_median_s = statistics.median(row.stock_s)
    row.rectified_median_s = statistics.median(row.rectified_s)
    row.ratio = row.rectified_median_s / row.stock_median_s
    if device.type == "cuda":
        row.peak_stock_bytes, row.peak_rectified_bytes = (
            max(peaks["stock"]),
            max(peaks["rectified"]),
        )
        row.syncs_kind = "CUDA sync-debug warnings"
        row.syncs_stock, row.syncs_rectified, row.syncs_in_steps = cuda_syncs(case)
    row.project_sites, row.project_sites_in_steps, _ = project_syncs(case)
    if device.type != "cuda":
        row.syncs_kind = "project-code synchronising calls (CPU proxy)"
        row.syncs_stock = 0  # only project code is counted; the stock run runs none
        row.syncs_rectified = len(row.project_sites)
        row.syncs_in_steps = len(row.project_sites_in_steps)
        return row
    extra = (row.peak_rectified_bytes - row.peak_stock_bytes) / row.latent_bytes
    row.verdict = {
        "time": row.ratio <= TARGET_RATIO,
        "syncs": row.syncs_rectified - row.syncs_stock <= TARGET_ADDED_SYNCS
        and row.syncs_in_steps == 0,
        "memory": extra <= TARGET_EXTRA_LATENTS,
    }
    return row


# --------------------------------------------------------------------------- report
def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return f"CPU {name}, {torch.get_num_threads()} torch threads"


def _mib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:,.0f}"


def table(rows: list[Row], cuda: bool) -> str:
    lines = [
        "| model | scheduler | stock (s) | rectified (s) | ratio (pairs) | peak MiB stock → rectified "
        "| syncs/video stock → rectified (in steps) | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        spread = f"{min(r.pair_ratios):.3f}–{max(r.pair_ratios):.3f}"
        if cuda:
            extra = (r.peak_rectified_bytes - r.peak_stock_bytes) / r.latent_bytes
            memory = f"{_mib(r.peak_stock_bytes)} → {_mib(r.peak_rectified_bytes)} ({extra:+.2f} latents)"
            failed = [k for k, ok in (r.verdict or {}).items() if not ok]
            verdict = "PASS" if not failed else "FAIL (" + ", ".join(failed) + ")"
        else:
            memory, verdict = "n/a", "GPU run only"
        lines.append(
            f"| {r.model} | {r.scheduler} | {r.stock_median_s:.3f} | {r.rectified_median_s:.3f} "
            f"| {r.ratio:.3f} ({spread}) | {memory} | {r.syncs_stock} → {r.syncs_rectified} "
            f"({r.syncs_in_steps}) | {verdict} |"
        )
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gpu_cost",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--tiny", action="store_true", help="tiny models, 4 frames, 32 px, 4 steps, 1 pair, CPU"
    )
    parser.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    parser.add_argument(
        "--pairs", type=int, default=None, help="timed (stock, rectified) pairs (3)"
    )
    parser.add_argument("--frames", type=int, default=None, help="frames per video (16)")
    parser.add_argument("--size", type=int, default=None, help="pixels, SD1.5 and ModelScope (512)")
    parser.add_argument("--sdxl-size", type=int, default=None, help="pixels, SDXL (768)")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (25)")
    parser.add_argument(
        "--wan-frames", type=int, default=None, help="frames per Wan video, 4k + 1 (33)"
    )
    parser.add_argument("--wan-size", default=None, help="Wan's HEIGHTxWIDTH in pixels (480x832)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument(
        "--schedulers",
        default=",".join(ALL_SCHEDULERS),
        help="each model runs those of its kind: flow_* for Wan, the others for the UNets",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (1 with --tiny; else torch's)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    tiny = args.tiny
    defaults = (
        dict(pairs=1, frames=4, size=32, sdxl_size=32, steps=4, wan_frames=5, wan_size="32x32")
        if tiny
        else dict(
            pairs=3, frames=16, size=512, sdxl_size=768, steps=25, wan_frames=33, wan_size="480x832"
        )
    )
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() and not tiny else "cpu"
    args.models = [m for m in args.models.split(",") if m]
    args.schedulers = [s for s in args.schedulers.split(",") if s]
    for name, allowed in (("models", MODELS), ("schedulers", ALL_SCHEDULERS)):
        unknown = [v for v in getattr(args, name) if v not in allowed]
        if unknown:
            parser.error(
                f"--{name}: unknown {', '.join(unknown)} (choose from {', '.join(allowed)})"
            )
    for model in args.models:
        if not [s for s in args.schedulers if s in schedulers_for(model)]:
            parser.error(
                f"--schedulers: none for {model} (its: {', '.join(schedulers_for(model))})"
            )
    try:
        args.wan_height, args.wan_width = (int(v) for v in args.wan_size.lower().split("x"))
    except ValueError:
        parser.error(f"--wan-size: HEIGHTxWIDTH, not {args.wan_size!r}")
    if args.wan_frames < 1 or (args.wan_frames - 1) % 4:
        parser.error(
            f"--wan-frames: 4k + 1 (Wan's VAE: 1 + 4 per latent frame), not {args.wan_frames}"
        )
    if args.wan_height % 16 or args.wan_width % 16 or min(args.wan_height, args.wan_width) < 16:
        parser.error(f"--wan-size: multiples of 16 (VAE ×8, patch 2), not {args.wan_size}")
    if args.threads is None and tiny:
        args.threads = 1  # tiny layers gain nothing from threads, and lose a lot on a busy machine
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table; returns what ``--json`` writes."""
    args = parse(argv)
    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _run(args, device, dtype)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    import diffusers

    cuda = device.type == "cuda"
    began = time.perf_counter()
    print(f"hardware: {hardware(device)}")
    print(
        f"torch {torch.__version__}, diffusers {diffusers.__version__}, python {sys.version.split()[0]}"
    )
    print(
        f"{'tiny' if args.tiny else 'full-size'} random-weight models, {str(dtype).replace('torch.', '')}, "
        f"{args.frames} frames, {args.size} px (SDXL {args.sdxl_size} px), {args.steps} steps, "
        f"CFG {GUIDANCE}, params {PARAMS}, {args.pairs} timed pair(s) after a warm-up"
        + ("" if args.tiny else f"; text encoders with {TEXT_LAYERS} layers")
    )
    if any(m in FLOW_MODELS for m in args.models):
        wan_dtype = str(model_dtype(FLOW_MODELS[0], device)).replace("torch.", "")
        print(
            f"Wan 2.1 T2V 1.3B{' (tiny)' if args.tiny else ''}: {wan_dtype}, {args.wan_frames} "
            f"frames ({(args.wan_frames - 1) // 4 + 1} latent), {args.wan_height}×{args.wan_width} "
            f"px, flow shift {WAN_FLOW_SHIFT:g}, sigma_start {SIGMA_START}"
        )
    rows: list[Row] = []
    for model in args.models:
        weights = model_dtype(model, device)
        pipe = build(model, tiny=args.tiny, device=device, dtype=weights)
        for sched in args.schedulers:
            if sched in schedulers_for(model):
                rows.append(measure(pipe, model, sched, args, device, weights))
        del pipe
        if cuda:
            torch.cuda.empty_cache()
    print()
    print(table(rows, cuda))
    print()
    kind = rows[0].syncs_kind if rows else ""
    print(f"syncs: {kind}; per video, (in steps) = inside the hook's per-step code.")
    if cuda:
        print(
            f"targets: ratio ≤ {TARGET_RATIO}; ≤ {TARGET_ADDED_SYNCS} added syncs per video and "
            f"none in steps; peak memory ≤ {TARGET_EXTRA_LATENTS:g} latent above stock."
        )
    else:
        print(
            f"targets (ratio ≤ {TARGET_RATIO}, ≤ {TARGET_ADDED_SYNCS} added syncs per video and none "
            f"per step, peak memory ≤ {TARGET_EXTRA_LATENTS:g} latent more) apply to the GPU run."
        )
    sites: dict[str, list[str]] = {}
    for r in rows:
        for site in dict.fromkeys(r.project_sites):
            sites.setdefault(site, []).append(f"{r.model}/{r.scheduler}")
    print("project-code synchronising sites (SyncRecorder, per video):")
    for site, where in sites.items():
        print(f"  {site}  [{len(where)} of {len(rows)} runs]")
    if not sites:
        print("  (none)")
    overflowed = [f"{r.model}/{r.scheduler}" for r in rows if not r.finite]
    if overflowed:
        print(f"note: non-finite outputs (random weights) in {', '.join(overflowed)}")
    elapsed = time.perf_counter() - began
    print(f"total {elapsed:.1f} s")
    result = {
        "hardware": hardware(device),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "device": str(device),
        "dtype": str(dtype).replace("torch.", ""),
        "settings": {
            "tiny": args.tiny,
            "frames": args.frames,
            "size": args.size,
            "sdxl_size": args.sdxl_size,
            "steps": args.steps,
            "wan_frames": args.wan_frames,
            "wan_height": args.wan_height,
            "wan_width": args.wan_width,
            "wan_flow_shift": WAN_FLOW_SHIFT,
            "sigma_start": SIGMA_START,
            "pairs": args.pairs,
            "guidance_scale": GUIDANCE,
            "params": PARAMS,
            "text_layers": None if args.tiny else TEXT_LAYERS,
        },
        "targets": {
            "ratio": TARGET_RATIO,
            "added_syncs_per_video": TARGET_ADDED_SYNCS,
            "syncs_per_step": 0,
            "extra_peak_latents": TARGET_EXTRA_LATENTS,
            "judged": cuda,
        },
        "seconds": elapsed,
        "rows": [asdict(r) for r in rows],
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
