#!/usr/bin/env python3
"""Write seeded random-weight models into a ComfyUI install, with ComfyUI's own classes.

For the ComfyUI live tests on a machine with no GPU and no access to model hubs, and
without a WebUI. Nothing here is a usable image model: the weights are random, but every
tensor has the name and shape of the real files, so ComfyUI and AnimateDiff-Evolved (ADE)
load them through their normal code paths. Run it with the ComfyUI venv's Python:

    "$C/venv/bin/python" tests/comfyui/live/tools/make_random_comfyui_models.py --comfyui "$C/ComfyUI"

What it writes (under ``<ComfyUI>/models``):

  checkpoints/random-sd15.safetensors
      SD1.5: the UNet that ComfyUI's ``SD15`` configuration builds
      (comfy/supported_models.py), its ``SD1ClipModel`` text encoder and the
      ``AutoencoderKL`` VAE, saved through ``BaseModel.state_dict_for_saving``, i.e. in
      the LDM key layout of the real file (fp16, 1.1 k tensors, 2.0 GB).
  animatediff_models/mm_sd15_v2.safetensors   (and, with --motion-modules, more)
      ADE's own ``AnimateDiffModel`` (animatediff/motion_module_ad.py) in the layout ADE
      reads as AnimateDiff v2 for SD1.5 (mid block, 32 positions), fp16.
      ``--motion-modules all`` adds mm_sd15_v3 (no mid block), mm_sd15_AnimateLCM (no
      position-encoding buffers, as AnimateLCM files have none), mm_sdxl_v10_beta
      (3 blocks, SDXL) and hsxl_temporal_layers_native (HotShot-XL's own key names,
      ``temporal_attentions.N`` and ``positional_encoding``, which is how ADE tells it
      apart, animatediff/motion_module_ad.py:80-85).
  checkpoints/random-sdxl-slim-vega.safetensors   (--sdxl-vega, optional)
      An SDXL-family checkpoint with Segmind Vega's transformer depths ([0, 0, 1, 1, 2, 2],
      ComfyUI's ``Segmind_Vega``): SDXL's widths, blocks and conditioning, both SDXL text
      encoders (``SDXLClipModel``), the SDXL VAE; 3.2 GB; about 12 GB of memory to build.
  diffusion_models/random-wan2.1-t2v.safetensors, vae/random-wan2.1-vae.safetensors   (--wan)
      A Wan 2.1 text-to-video DiT that ComfyUI detects as ``WAN21_T2V`` (16 latent channels,
      patch (1, 2, 2)), built as ``comfy.ldm.wan.model.WanModel`` through that configuration,
      at the smallest size detection allows (dim 128 = one head, 2 blocks, ffn 256; 2.1 MiB),
      with the key names of Wan's own ``WanModel`` and no prefix (ComfyUI also strips a
      ``model.diffusion_model.`` one, comfy/sd.py:1636-1639), fp16; and a Wan
      2.1 VAE (``comfy.ldm.wan.vae.WanVAE``, base width 8; 1.8 MiB). No text encoder: the
      real one (umt5-xxl) has 5.7 B parameters; SETUP.md's test node gives CONDITIONING.
  diffusion_models/random-wan2.2-ti2v-5b.safetensors, vae/random-wan2.2-vae.safetensors  (--wan22)
      The same DiT with Wan 2.2 TI2V-5B's 48 channels (detected as ``WAN22_T2V``, ComfyUI's
      TI2V-5B type; 2.2 MiB) and the 48-channel Wan 2.2 VAE (``comfy.ldm.wan.vae2_2.WanVAE``),
      whose widths ComfyUI does not read from the file: full size, 705 M parameters, 1.31 GiB.

Each checkpoint is read back with ``comfy.sd.load_checkpoint_guess_config`` (the loader of
``CheckpointLoaderSimple``): the detected configuration must be the intended one and no
key may be missing or left over. Each motion module is read back with ADE's
``normalize_ad_state_dict`` and loaded strictly into a fresh ``AnimateDiffModel``.
Each Wan DiT is read back with ``comfy.sd.load_diffusion_model`` (``UNETLoader``) and each
Wan VAE with ``comfy.sd.VAE`` (``VAELoader``), with the same checks, and the VAE encodes
and decodes a short clip through ComfyUI's wrapper.

Things done so the random models behave (see the project's host notes):
  * ComfyUI's layers skip their own initialisation; every weight is drawn here
    (std 1/sqrt(fan-in); norms at 1 and 0), layers that real models start at zero
    included, or the UNet would predict exactly zero;
  * the UNet output conv is rescaled so the predicted noise has std ~1 (SDXL: per
    channel, without its mean); motion-module ``proj_out`` are small (0.1), so the
    motion modules perturb the UNet rather than drown it;
  * the VAE posterior log-variance is pinned very low (-30) and its mean rescaled so the
    latent has std ~1 after the scale factor; the decoder output has std ~0.5, so pictures
    are neither flat nor clipped;
  * Wan: RMSNorm and RMS_norm scales start at 1 (fill_random leaves 1-D parameters
    near 0); the DiT's output layer is rescaled so the predicted velocity has std ~1; the
    VAE's posterior mean is rescaled per channel to the mean and std of ComfyUI's latent
    format (``latent_formats.Wan21`` / ``Wan22``), so that ``process_in`` gives ~N(0, 1),
    and its decoder output has std ~0.5;
  * the same seed gives bit-identical files.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import sys
import time

MOTION_MODULES = {
    # name: (file, sd type, mid block, positions, format)
    "sd15_v2": ("mm_sd15_v2.safetensors", "SD1.5", True, 32, "AnimateDiff"),
    "sd15_v3": ("mm_sd15_v3.safetensors", "SD1.5", False, 32, "AnimateDiff"),
    "animatelcm": ("mm_sd15_AnimateLCM.safetensors", "SD1.5", True, None, "AnimateLCM"),
    "sdxl_v10_beta": ("mm_sdxl_v10_beta.safetensors", "SDXL", False, 32, "AnimateDiff"),
    "hotshotxl": ("hsxl_temporal_layers_native.safetensors", "SDXL", False, 24, "HotshotXL"),
}

# The UNet configurations ComfyUI detects for these files (comfy/model_detection.py
# detect_unet_config gives these fields; comfy/supported_models.py matches them).
UNET_SD15 = {
    "use_checkpoint": False,
    "image_size": 32,
    "out_channels": 4,
    "use_spatial_transformer": True,
    "legacy": False,
    "adm_in_channels": None,
    "in_channels": 4,
    "model_channels": 320,
    "num_res_blocks": [2, 2, 2, 2],
    "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
    "channel_mult": [1, 2, 4, 4],
    "transformer_depth_middle": 1,
    "use_linear_in_transformer": False,
    "context_dim": 768,
    "num_heads": 8,
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    "use_temporal_attention": False,
    "use_temporal_resblock": False,
}
UNET_VEGA = {
    "use_checkpoint": False,
    "image_size": 32,
    "out_channels": 4,
    "use_spatial_transformer": True,
    "legacy": False,
    "num_classes": "sequential",
    "adm_in_channels": 2816,
    "in_channels": 4,
    "model_channels": 320,
    "num_res_blocks": [2, 2, 2],
    "transformer_depth": [0, 0, 1, 1, 2, 2],
    "transformer_depth_output": [0, 0, 0, 1, 1, 1, 2, 2, 2],
    "channel_mult": [1, 2, 4],
    "transformer_depth_middle": -1,
    "use_linear_in_transformer": True,
    "context_dim": 2048,
    "num_head_channels": 64,
    "use_temporal_attention": False,
    "use_temporal_resblock": False,
}
VAE_DDCONFIG = {
    "double_z": True,
    "z_channels": 4,
    "resolution": 256,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 128,
    "ch_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_resolutions": [],
    "dropout": 0.0,
}

# Wan (flow-matching video DiTs, ComfyUI 3be0175). comfy/model_detection.py:459-504 reads a
# Wan DiT's sizes from its weights: dim = head.modulation's last axis, out_dim = head.head's
# rows // 4 (patch 1x2x2), ffn_dim = blocks.0.ffn.0's rows, num_layers = the blocks counted,
# in_dim = patch_embedding's input channels, num_heads = dim // 128 (:466), patch (1, 2, 2),
# freq_dim 256, qk_norm and cross_attn_norm True, eps 1e-6; model_type "t2v" when there is
# no img_emb.proj.0.bias (:491-495); text_dim is not read (WanModel's default 4096,
# comfy/ldm/wan/model.py:414, umt5-xxl's width). comfy/supported_models.py matches
# WAN22_T2V (:1233-1244, out_dim 48, latent_formats.Wan22, model_base.WAN22: the TI2V-5B
# model) before WAN21_T2V (:1106-1137, latent_formats.Wan21, shift 8.0, model_base.WAN21)
# in its list (:1632). dim 128 is the smallest with a head (one head of 128).
WAN_TINY = {"dim": 128, "num_heads": 1, "ffn_dim": 256, "num_layers": 2}
WAN_MODELS = {
    # key: (file, in/out channels, ComfyUI config class, model_base class, latent format)
    "wan21": ("random-wan2.1-t2v.safetensors", 16, "WAN21_T2V", "WAN21", "Wan21"),
    "wan22": ("random-wan2.2-ti2v-5b.safetensors", 48, "WAN22_T2V", "WAN22", "Wan22"),
}
# comfy/sd.py:664-688, class VAE: a Wan VAE has decoder.middle.0.residual.0.gamma; with
# decoder.upsamples.0.upsamples.0.residual.2.weight it is Wan 2.2's (48 channels, fixed
# dim 160 and WanVAE's default dec_dim 256, comfy/ldm/wan/vae2_2.py:617-629: nothing read
# from the file), else Wan 2.1's: dim = decoder.head.0.gamma's length, image channels =
# encoder.conv1.weight's input channels, z_dim 16. These are the ddconfigs it builds.
WAN21_VAE_DIM = 8  # any width loads; 8 keeps 8 channels in the last decoder stage
WAN_VAES = {
    # key: (file, module, ddconfig, latent format)
    "wan21": (
        "random-wan2.1-vae.safetensors",
        "comfy.ldm.wan.vae",
        {
            "dim": WAN21_VAE_DIM,
            "z_dim": 16,
            "dim_mult": [1, 2, 4, 4],
            "num_res_blocks": 2,
            "attn_scales": [],
            "temperal_downsample": [False, True, True],
            "image_channels": 3,
            "dropout": 0.0,
        },
        "Wan21",
    ),
    "wan22": (
        "random-wan2.2-vae.safetensors",
        "comfy.ldm.wan.vae2_2",
        {
            "dim": 160,
            "z_dim": 48,
            "dim_mult": [1, 2, 4, 4],
            "num_res_blocks": 2,
            "attn_scales": [],
            "temperal_downsample": [False, True, True],
            "dropout": 0.0,
        },
        "Wan22",
    ),
}
# One metadata entry only: safetensors writes the metadata map in an order that changes from
# process to process (with two entries, the same tensors in one of two byte orders).
WAN_METADATA = {"random": "seeded, make_random_comfyui_models.py"}
# What a umt5-xxl conditioning looks like to the DiT: [B, 512, 4096], 512 = the tokenizer's
# min_length (comfy/text_encoders/wan.py:14), positions after the prompt's tokens zeroed
# (zero_out_masked, comfy/text_encoders/wan.py:9, comfy/sd1_clip.py:279-280). Used to
# calibrate; tools/nr_test_nodes gives the server the same shape.
WAN_TEXT = {"length": 512, "width": 4096, "tokens": 16}


def log(message: str) -> None:
    print(f"[make_random_comfyui_models] {message}", flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--comfyui", required=True, help="the ComfyUI folder (holds main.py)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--skip-checkpoint", action="store_true", help="no random-sd15")
    parser.add_argument(
        "--motion-modules",
        default="sd15_v2",
        help=f"comma-separated list from {', '.join(MOTION_MODULES)}, or all (default sd15_v2); "
        "none for no motion module",
    )
    parser.add_argument(
        "--sdxl-vega", action="store_true", help="also the SDXL-family random-sdxl-slim-vega"
    )
    parser.add_argument(
        "--wan",
        action="store_true",
        help="also a tiny Wan 2.1 T2V DiT (diffusion_models/random-wan2.1-t2v) and a Wan 2.1 "
        "VAE (vae/random-wan2.1-vae); 4 MiB, seconds",
    )
    parser.add_argument(
        "--wan22",
        action="store_true",
        help="also a tiny Wan 2.2 TI2V-5B-shaped DiT (diffusion_models/random-wan2.2-ti2v-5b) "
        "and the full-size 48-channel Wan 2.2 VAE (vae/random-wan2.2-vae, 1.3 GiB)",
    )
    parser.add_argument("--ckpt-name", default="random-sd15.safetensors")
    parser.add_argument("--sdxl-vega-name", default="random-sdxl-slim-vega.safetensors")
    parser.add_argument("--models-dir", help="default: <ComfyUI>/models")
    return parser.parse_args(argv)


def import_comfyui(comfyui: str):
    """ComfyUI's modules from its folder, on the CPU, without parsing our command line."""
    comfyui = os.path.abspath(comfyui)
    if not os.path.isfile(os.path.join(comfyui, "main.py")):
        sys.exit(f"{comfyui} is not a ComfyUI folder (no main.py)")
    sys.path.insert(0, comfyui)
    import comfy.options

    comfy.options.enable_args_parsing(False)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.model_management

    return comfyui


def import_ade(comfyui: str):
    """ADE's motion-module code, as a package of its own folder (it imports relatively)."""
    folder = os.path.join(comfyui, "custom_nodes", "ComfyUI-AnimateDiff-Evolved")
    if not os.path.isdir(os.path.join(folder, "animatediff")):
        sys.exit(f"no ComfyUI-AnimateDiff-Evolved in {folder} (SETUP.md section 1)")
    sys.path.insert(0, folder)
    return importlib.import_module("animatediff.motion_module_ad")


def fill_random(module, torch, generator) -> None:
    """Every parameter drawn: ComfyUI's layers skip initialisation (comfy/ops.py)."""
    nn = torch.nn
    for sub in module.modules():
        params = dict(sub.named_parameters(recurse=False))
        if isinstance(sub, (nn.GroupNorm, nn.LayerNorm)):
            if "weight" in params and params["weight"] is not None:
                params["weight"].data.copy_(1 + 0.02 * randn(params["weight"], torch, generator))
            if "bias" in params and params["bias"] is not None:
                params["bias"].data.copy_(0.02 * randn(params["bias"], torch, generator))
            continue
        if isinstance(sub, nn.Embedding):
            params["weight"].data.copy_(0.02 * randn(params["weight"], torch, generator))
            continue
        for name, param in params.items():
            if param is None:
                continue
            if name == "weight" and param.dim() >= 2:
                fan_in = param[0].numel()
                param.data.copy_(randn(param, torch, generator) / fan_in**0.5)
            elif name == "bias":
                param.data.copy_(0.02 * randn(param, torch, generator))
            else:
                param.data.copy_(0.02 * randn(param, torch, generator))


def randn(like, torch, generator):
    return torch.randn(like.shape, generator=generator, dtype=torch.float32).to(like.dtype)


def build_checkpoint(kind: str, out_path: str, args, torch) -> None:
    import comfy.model_detection
    import comfy.sd
    from comfy.ldm.models.autoencoder import AutoencoderKL

    generator = torch.Generator().manual_seed(args.seed + (0 if kind == "sd15" else 10))
    unet_config = dict(UNET_SD15 if kind == "sd15" else UNET_VEGA, dtype=torch.float32)
    model_config = comfy.model_detection.model_config_from_unet_config(unet_config)
    wanted = "SD15" if kind == "sd15" else "Segmind_Vega"
    assert type(model_config).__name__ == wanted, type(model_config).__name__
    model_config.set_inference_dtype(torch.float32, None)
    model = model_config.get_model({}, device="cpu")
    unet = model.diffusion_model
    clip = model_config.clip_target({}).clip(device="cpu", dtype=torch.float32)
    vae = AutoencoderKL(ddconfig=dict(VAE_DDCONFIG), embed_dim=4)
    for part in (unet, clip, vae):
        part.float()
        fill_random(part, torch, generator)
    if hasattr(clip, "clip_l"):  # CLIP's logit scale: the real value
        for encoder in (getattr(clip, "clip_l", None), getattr(clip, "clip_g", None)):
            scale = getattr(getattr(encoder, "transformer", None), "logit_scale", None)
            if scale is not None:
                scale.data.fill_(4.6052)
    scale_factor = model_config.latent_format.scale_factor
    calibrate_vae(vae, scale_factor, torch, generator)
    calibrate_unet(unet, kind, unet_config, torch, generator)

    sd = model.state_dict_for_saving(unet.state_dict(), clip.state_dict(), vae.state_dict())
    tensors = {
        k: (v.half() if v.is_floating_point() else v).contiguous()
        for k, v in sd.items()
        if isinstance(v, torch.Tensor)
    }
    del model, unet, clip, vae, sd
    gc.collect()
    save(tensors, out_path, {"format": "pt", "random": "seeded, make_random_comfyui_models.py"})
    del tensors
    gc.collect()
    check_checkpoint(out_path, wanted, torch)


def calibrate_vae(vae, scale_factor: float, torch, generator) -> None:
    with torch.no_grad():
        quant = vae.quant_conv  # 8 channels: the posterior's mean (0-3) and log-variance (4-7)
        quant.weight[4:] = 0
        quant.bias[4:] = -30.0
        image = torch.rand((2, 3, 64, 64), generator=generator) * 2 - 1
        mean = vae.encode(image)
        mean = mean[0] if isinstance(mean, tuple) else mean
        gain = 1.0 / (float(mean.std()) * scale_factor)
        quant.weight[:4] *= gain
        quant.bias[:4] *= gain
        latent = torch.randn((2, 4, 8, 8), generator=generator) / scale_factor
        decoded = vae.decode(latent)
        conv = vae.decoder.conv_out
        conv.weight *= 0.5 / float(decoded.std())
        conv.bias.zero_()


def calibrate_unet(unet, kind: str, unet_config: dict, torch, generator) -> None:
    with torch.no_grad():
        x = torch.randn((2, 4, 8, 8), generator=generator)
        t = torch.tensor([500.0, 900.0])
        context = torch.randn((2, 77, unet_config["context_dim"]), generator=generator)
        extra = {}
        if unet_config.get("adm_in_channels"):
            extra["y"] = torch.randn((2, unet_config["adm_in_channels"]), generator=generator)
        out = unet(x, t, context=context, **extra)
        conv = unet.out[-1]
        if kind == "sd15":
            conv.weight *= 1.0 / float(out.std())
            conv.bias.zero_()
        else:  # per channel, without its mean
            mean = out.mean(dim=(0, 2, 3))
            std = out.std(dim=(0, 2, 3))
            conv.weight /= std.view(-1, 1, 1, 1)
            conv.bias.copy_((conv.bias - mean) / std)


def save(tensors: dict, path: str, metadata: dict) -> None:
    from safetensors.torch import save_file

    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = path + ".partial"
    save_file(dict(sorted(tensors.items())), partial, metadata=metadata)
    os.replace(partial, path)
    size = os.path.getsize(path)
    shown = f"{size / 2**30:.2f} GiB" if size >= 2**30 / 10 else f"{size / 2**20:.1f} MiB"
    log(f"wrote {path} ({len(tensors)} tensors, {shown})")


def check_checkpoint(path: str, wanted: str, torch) -> None:
    import logging

    import comfy.sd

    problems = []

    class Catch(logging.Handler):
        def emit(self, record):
            text = record.getMessage()
            if (
                "missing" in text.lower()
                or "left over" in text.lower()
                or "unet unexpected" in text
            ):
                problems.append(text[:300])

    handler = Catch()
    logging.getLogger().addHandler(handler)
    try:
        model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(path)[:4]
    finally:
        logging.getLogger().removeHandler(handler)
    found = type(model.model.model_config).__name__
    assert found == wanted, f"ComfyUI reads {path} as {found}, not {wanted}"
    assert clip is not None and vae is not None, "no text encoder or VAE found in the checkpoint"
    assert not problems, problems
    log(f"read back as {found} by comfy.sd.load_checkpoint_guess_config: ok")


def build_motion_module(key: str, out_dir: str, args, torch, mm) -> None:
    file_name, sd_type, mid, positions, mm_format = MOTION_MODULES[key]
    generator = torch.Generator().manual_seed(args.seed + 2 + list(MOTION_MODULES).index(key))
    layer_channels = (320, 640, 1280) if sd_type == "SDXL" else (320, 640, 1280, 1280)
    # what AnimateDiffModel reads from a state dict to choose its shape (the keys' presence,
    # the number of attention blocks, and pos_encoder.pe's length)
    pe = "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.{}.pos_encoder.pe"
    skeleton = {pe.format(i): torch.zeros(1, positions or 64, 320) for i in (0, 1)}
    skeleton[f"up_blocks.{len(layer_channels) - 1}.x"] = torch.zeros(1)
    if mid:
        skeleton["mid_block.x"] = torch.zeros(1)
    info = mm.AnimateDiffInfo(
        sd_type=mm.ModelTypeSD.SDXL if sd_type == "SDXL" else mm.ModelTypeSD.SD1_5,
        mm_format=mm_format,
        mm_version="v2" if mid else "v1",
        mm_name=file_name,
    )
    model = mm.AnimateDiffModel(skeleton, info, {"ops": __import__("comfy.ops").ops.manual_cast})
    model.float()
    fill_random(model, torch, generator)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".proj_out." in name:
                param *= 0.1
    state = {k: v.detach() for k, v in model.state_dict().items()}
    if positions is None:  # AnimateLCM files carry no position encodings
        state = {k: v for k, v in state.items() if "pos_encoder" not in k}
    else:  # the sinusoids the real files hold, for the length asked
        for k in state:
            if k.endswith("pos_encoder.pe"):
                assert state[k].shape[1] == positions, (k, state[k].shape)
    if mm_format == "HotshotXL":  # HotShot-XL's own names (ADE maps them back)
        state = {
            k.replace(".motion_modules.", ".temporal_attentions.", 1)
            .replace(".temporal_transformer.", ".", 1)
            .replace("pos_encoder.pe", "pos_encoder.positional_encoding"): v
            for k, v in state.items()
        }
    tensors = {k: v.half().contiguous() for k, v in state.items()}
    path = os.path.join(out_dir, file_name)
    save(tensors, path, {"random": "seeded, make_random_comfyui_models.py"})
    check_motion_module(path, mm, sd_type, mm_format, "v2" if mid else None, torch)


def check_motion_module(path, mm, sd_type, mm_format, version, torch) -> None:
    from safetensors.torch import load_file

    state, info = mm.normalize_ad_state_dict(load_file(path), os.path.basename(path))
    assert info.mm_format == mm_format, (info.mm_format, mm_format)
    assert (info.sd_type == mm.ModelTypeSD.SDXL) == (sd_type == "SDXL"), info.sd_type
    if version:
        assert info.mm_version == version, info.mm_version
    fresh = mm.AnimateDiffModel(state, info, {"ops": __import__("comfy.ops").ops.manual_cast})
    result = fresh.load_state_dict(state, strict=False)  # as ADE loads (model_injection.py:869)
    missing = [k for k in result.missing_keys if not k.endswith("pos_encoder.pe")]
    assert not missing and not result.unexpected_keys, (missing, result.unexpected_keys)
    if mm_format != "AnimateLCM":
        assert not result.missing_keys, result.missing_keys
    log(f"read back by ADE as {info.get_string()}: ok")


def wan_unet_config(key: str) -> dict:
    """The configuration comfy/model_detection.py:459-504 reads from such a file."""
    channels = WAN_MODELS[key][1]
    return {
        "image_model": "wan2.1",
        "model_type": "t2v",
        "patch_size": (1, 2, 2),
        "freq_dim": 256,
        "window_size": (-1, -1),
        "qk_norm": True,
        "cross_attn_norm": True,
        "eps": 1e-6,
        "in_dim": channels,
        "out_dim": channels,
        **WAN_TINY,
    }


def unit_scales(module, torch, generator) -> None:
    """RMS norms at 1 (+ 2 % noise): ``fill_random`` gives other 1-D parameters ~0.02.
    WanModel's q/k norms are comfy.ops RMSNorm (``weight``), the VAEs' RMS_norm ``gamma``."""
    with torch.no_grad():
        for sub in module.modules():
            if "RMS" not in type(sub).__name__:
                continue
            for name in ("weight", "gamma"):
                param = getattr(sub, name, None)
                if isinstance(param, torch.nn.Parameter):
                    param.copy_(1 + 0.02 * randn(param, torch, generator))


def wan_text(batch: int, torch, generator):
    """Like umt5-xxl's output: N(0, 1) for the prompt's tokens, zeros after them."""
    context = torch.zeros((batch, WAN_TEXT["length"], WAN_TEXT["width"]))
    tokens = WAN_TEXT["tokens"]
    context[:, :tokens] = torch.randn((batch, tokens, WAN_TEXT["width"]), generator=generator)
    return context


def build_wan_model(key: str, out_path: str, args, torch) -> None:
    import comfy.model_detection

    _, channels, wanted, base, _ = WAN_MODELS[key]
    generator = torch.Generator().manual_seed(args.seed + 20 + 2 * list(WAN_MODELS).index(key))
    unet_config = wan_unet_config(key)
    model_config = comfy.model_detection.model_config_from_unet_config(unet_config)
    assert type(model_config).__name__ == wanted, type(model_config).__name__
    model_config.set_inference_dtype(torch.float32, None)
    model = model_config.get_model({}, device="cpu")  # model_base.WAN21 / WAN22
    assert type(model).__name__ == base, type(model).__name__
    dit = model.diffusion_model  # comfy.ldm.wan.model.WanModel
    dit.float()
    fill_random(dit, torch, generator)
    unit_scales(dit, torch, generator)
    with torch.no_grad():  # the velocity: std ~1 for N(0, 1) latents and t in the schedule
        x = torch.randn((2, channels, 3, 4, 4), generator=generator)
        t = torch.tensor([500.0, 900.0])
        out = dit(x, t, wan_text(2, torch, generator))
        head = dit.head.head
        head.weight *= 1.0 / float(out.std())
        head.bias.zero_()
    tensors = {k: v.detach().half().contiguous() for k, v in dit.state_dict().items()}
    del model, dit
    gc.collect()
    save(tensors, out_path, WAN_METADATA)
    check_wan_model(out_path, key, torch)


def check_wan_model(path: str, key: str, torch) -> None:
    import logging

    import comfy.sd

    _, _, wanted, base, latent_format = WAN_MODELS[key]
    problems = []

    class Catch(logging.Handler):
        def emit(self, record):
            text = record.getMessage()
            if "unet missing" in text or "unet unexpected" in text or "left over" in text:
                problems.append(text[:300])

    handler = Catch()
    logging.getLogger().addHandler(handler)
    try:
        patcher = comfy.sd.load_diffusion_model(path)  # what UNETLoader does (nodes.py:968-969)
    finally:
        logging.getLogger().removeHandler(handler)
    model = patcher.model
    found = type(model.model_config).__name__
    assert found == wanted, f"ComfyUI reads {path} as {found}, not {wanted}"
    assert type(model).__name__ == base, type(model).__name__
    assert type(model.latent_format).__name__ == latent_format, type(model.latent_format)
    assert model.model_type.name == "FLOW", model.model_type
    detected = model.model_config.unet_config
    for field, value in wan_unet_config(key).items():
        assert detected.get(field) == value, (field, detected.get(field), value)
    assert not problems, problems
    size = sum(p.numel() for p in model.diffusion_model.parameters())
    log(
        f"read back as {found} ({base}, {latent_format}, FLOW, dim {detected['dim']}, "
        f"{detected['num_layers']} blocks, {size / 1e6:.2f} M parameters) by "
        "comfy.sd.load_diffusion_model: ok"
    )


def build_wan_vae(key: str, out_path: str, args, torch) -> None:
    import comfy.latent_formats

    _, module, ddconfig, latent_format = WAN_VAES[key]
    generator = torch.Generator().manual_seed(args.seed + 21 + 2 * list(WAN_VAES).index(key))
    vae = importlib.import_module(module).WanVAE(**ddconfig)
    vae.float()
    fill_random(vae, torch, generator)
    unit_scales(vae, torch, generator)
    calibrate_wan_vae(vae, getattr(comfy.latent_formats, latent_format)(), torch, generator)
    tensors = {k: v.detach().half().contiguous() for k, v in vae.state_dict().items()}
    del vae
    gc.collect()
    save(tensors, out_path, WAN_METADATA)
    del tensors
    gc.collect()
    check_wan_vae(out_path, key, torch)


def calibrate_wan_vae(vae, latent_format, torch, generator) -> None:
    """The posterior mean (conv1's first z_dim outputs; WanVAE.encode returns only it) per
    channel to the latent format's mean and std, so process_in gives ~N(0, 1); the decoder's
    last convolution so that pictures have std ~0.5 in [-1, 1]."""
    z_dim = vae.z_dim
    mean = latent_format.latents_mean.view(-1)
    std = latent_format.latents_std.view(-1)
    with torch.no_grad():
        clip = torch.rand((1, 3, 5, 64, 64), generator=generator) * 2 - 1  # 5 frames
        mu = vae.encode(clip)
        gain = std / mu.std(dim=(0, 2, 3, 4))
        conv = vae.conv1
        conv.weight[:z_dim] *= gain.view(-1, 1, 1, 1, 1)
        conv.bias[:z_dim] = (conv.bias[:z_dim] - mu.mean(dim=(0, 2, 3, 4))) * gain + mean
        shape = (1, z_dim, *mu.shape[2:])
        latent = mean.view(1, -1, 1, 1, 1) + std.view(1, -1, 1, 1, 1) * torch.randn(
            shape, generator=generator
        )
        decoded = vae.decode(latent)
        last = vae.decoder.head[-1]
        last.weight *= 0.5 / float(decoded.std())
        last.bias.zero_()


def check_wan_vae(path: str, key: str, torch) -> None:
    import logging

    import comfy.latent_formats
    import comfy.sd
    import comfy.utils

    _, module, ddconfig, latent_format = WAN_VAES[key]
    problems = []

    class Catch(logging.Handler):
        def emit(self, record):
            if "Missing VAE keys" in record.getMessage():
                problems.append(record.getMessage()[:300])

    handler = Catch()
    logging.getLogger().addHandler(handler)
    try:  # what VAELoader does (nodes.py:825-827)
        sd, metadata = comfy.utils.load_torch_file(path, return_metadata=True)
        vae = comfy.sd.VAE(sd=sd, metadata=metadata)
        vae.throw_exception_if_invalid()
    finally:
        logging.getLogger().removeHandler(handler)
    model = vae.first_stage_model
    assert type(model).__module__ == module, type(model).__module__
    assert vae.latent_channels == ddconfig["z_dim"], vae.latent_channels
    if "image_channels" in ddconfig:
        assert model.dim == ddconfig["dim"], model.dim
    assert not problems, problems
    left_over = set(sd) - set(model.state_dict())
    assert not left_over, sorted(left_over)[:5]
    # through ComfyUI's wrapper, as VAEEncode / VAEDecode call it: 5 frames -> 2 latent frames
    pixels = torch.rand((5, 64, 64, 3), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        latent = vae.encode(pixels)
        frames = vae.decode(latent)
    spatial = 64 // latent_format_ratio(latent_format)
    assert tuple(latent.shape) == (1, ddconfig["z_dim"], 2, spatial, spatial), latent.shape
    normed = getattr(comfy.latent_formats, latent_format)().process_in(latent)
    assert frames.shape[-4:] == (5, 64, 64, 3), frames.shape
    assert torch.isfinite(frames).all() and float(frames.std()) > 0.05, float(frames.std())
    size = sum(p.numel() for p in model.parameters())
    log(
        f"read back by comfy.sd.VAE as {module}.WanVAE ({size / 1e6:.1f} M parameters, "
        f"{vae.latent_channels} channels): ok; latent {tuple(latent.shape)} after process_in "
        f"mean {float(normed.mean()):.2f} std {float(normed.std()):.2f}, pictures std "
        f"{float(frames.std()):.2f}"
    )


def latent_format_ratio(latent_format: str) -> int:
    import comfy.latent_formats

    return getattr(comfy.latent_formats, latent_format).spacial_downscale_ratio


def main(argv=None) -> None:
    args = parse_args(argv)
    comfyui = import_comfyui(args.comfyui)
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    models = args.models_dir or os.path.join(comfyui, "models")
    wanted = args.motion_modules.strip().lower()
    keys = (
        []
        if wanted == "none"
        else list(MOTION_MODULES)
        if wanted == "all"
        else [k.strip() for k in wanted.split(",") if k.strip()]
    )
    unknown = [k for k in keys if k not in MOTION_MODULES]
    if unknown:
        sys.exit(f"unknown motion module(s) {unknown}; known: {', '.join(MOTION_MODULES)}, all")
    timings = {}
    if not args.skip_checkpoint:
        start = time.time()
        build_checkpoint("sd15", os.path.join(models, "checkpoints", args.ckpt_name), args, torch)
        timings["sd15"] = round(time.time() - start, 1)
    if keys:
        mm = import_ade(comfyui)
        for key in keys:
            start = time.time()
            build_motion_module(key, os.path.join(models, "animatediff_models"), args, torch, mm)
            timings[key] = round(time.time() - start, 1)
    if args.sdxl_vega:
        start = time.time()
        out = os.path.join(models, "checkpoints", args.sdxl_vega_name)
        build_checkpoint("vega", out, args, torch)
        timings["sdxl_vega"] = round(time.time() - start, 1)
    for key, wanted in (("wan21", args.wan), ("wan22", args.wan22)):
        if not wanted:
            continue
        start = time.time()
        build_wan_model(
            key, os.path.join(models, "diffusion_models", WAN_MODELS[key][0]), args, torch
        )
        timings[key] = round(time.time() - start, 1)
        start = time.time()
        build_wan_vae(key, os.path.join(models, "vae", WAN_VAES[key][0]), args, torch)
        timings[f"{key}_vae"] = round(time.time() - start, 1)
    log("seconds: " + json.dumps(timings))


if __name__ == "__main__":
    main()
