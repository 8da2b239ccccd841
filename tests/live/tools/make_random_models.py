#!/usr/bin/env python3
"""Write seeded random-weight models into a local AUTOMATIC1111 WebUI install.

For live tests of this extension on a machine with no GPU and no access to
model hubs.  Nothing produced here is a usable image model: the weights are
random, but every tensor has the name and shape the real files have, so the
WebUI and sd-webui-animatediff load them through their normal code paths.

What it writes (paths relative to --webui):

  hf_home/hub/models--openai--clip-vit-large-patch14/...
      An offline Hugging Face cache with the CLIP ViT-L/14 tokenizer
      (vocab.json and merges.txt derived from the CLIP BPE file that the
      open-clip-torch package ships, bpe_simple_vocab_16e6.txt.gz) and the
      model config.  Point HF_HOME at <webui>/hf_home when launching.
  models/Stable-diffusion/<--ckpt-name>          (default random-sd15.safetensors)
      An SD1.5-architecture checkpoint built from the install's own
      ldm.models.diffusion.ddpm.LatentDiffusion and configs/v1-inference.yaml,
      random weights, fp16 (the diffusion-schedule buffers stay fp32).
  extensions/sd-webui-animatediff/model/<--mm-name>   (default mm_sd15_v2.safetensors)
      A motion module with the mm_sd15_v2 key layout, built from the
      extension's own motion_module.MotionWrapper, random weights, fp16.

With --controlnet, also the models sd-webui-controlnet needs for a tile
ControlNet and IP-Adapter (the extension must be installed; its own classes
and loaders are used, imported with small stand-ins for the WebUI modules
they touch):

  models/ControlNet/<--tile-name>        (default control_v11f1e_sd15_tile.safetensors)
      scripts/cldm.py ControlNet with the extension's controlnet_default_config
      (3 hint channels), fp16.  The encoder is copied from the checkpoint's
      UNet, as real ControlNets start (--cn-init random: the class's own init).
  models/ControlNet/<--ip-adapter-name>  (default ip-adapter_sd15.safetensors)
      The SD1.5 IP-Adapter layout (36 tensors): the extension's ImageProjModel
      and one to_k_ip / to_v_ip pair per cross-attention layer, in the order
      and widths its hooks use; to_k_ip / to_v_ip start as the checkpoint's
      attn2.to_k / to_v, as in IP-Adapter training.  fp16.
  <annotator models path>/clip_vision/clip_h.pth
      (default extensions/sd-webui-controlnet/annotator/downloads/...)
      The CLIP ViT-H image encoder: transformers' CLIPVisionModelWithProjection
      with the extension's config_clip_h, every key, fp16 (position_ids stay
      int64).  A torch zip file without the .format_version and
      .storage_alignment entries newer torch writes, which the WebUI's safe
      unpickler (modules/safe.py) refuses; the legacy format would pass too
      but is not reproducible (it names storages by memory address).

Each file is loaded back through the extension's loaders (ControlNet's
build_model_by_guess, which calls IPAdapterModel.load; the CLIP-H detector)
and the .pth through the WebUI's modules.safe check.  Zero-initialised layers
(zero convs, hint-block output) are refilled, then calibrated: the hint
features match the latent's first-block features in size, and each control
residual is --cn-control-scale times the features it is taken from.

Opt-in, for SDXL and more AnimateDiff motion modules (all from the install's
own classes; see SETUP.md section 7):

  models/Stable-diffusion/<--sdxl-name>   (--sdxl; default random-sdxl.safetensors)
      SDXL base from sgm's DiffusionEngine (repositories/generative-models) and
      the config the WebUI picks for SDXL checkpoints (configs/inference/
      sd_xl_base.yaml there, modules/sd_models_config.py config_sdxl): UNet,
      CLIP ViT-L and OpenCLIP ViT-bigG-14 text encoders (built from configs,
      nothing downloaded), VAE; 2516 tensors, 3.47 B parameters, fp16.
  models/Stable-diffusion/<--sdxl-slim-name> and <stem>.yaml   (--sdxl-slim;
      default random-sdxl-slim.safetensors)
      The same with --sdxl-slim-depth (default 1) transformer layers in every
      attention block instead of 2 and 10: every block, width, injection point
      and conditioning is SDXL's.  The WebUI reads the .yaml beside the file.
  models/VAE-approx/vaeapprox-sdxl.pt     (with --sdxl or --sdxl-slim, or --sdxl-vae-approx)
      The "Approx NN" live-preview decoder the WebUI would otherwise download
      on the first SDXL request: its own VAEApprox class, fp32, in a torch zip
      its safe unpickler accepts.
  <motion module folder>/...              (--motion-modules LIST, or all)
      sd15_v3 -> mm_sd15_v3.safetensors (read as AnimateDiff V3),
      animatelcm -> mm_sd15_AnimateLCM.safetensors (AnimateLCM; no
      position-encoding buffers, as AnimateLCM files have none),
      sdxl_v10_beta -> mm_sdxl_v10_beta.safetensors (AnimateDiff SDXL),
      hotshotxl -> hsxl_temporal_layers.safetensors (HotShot-XL); KEY=FILE
      renames one.  AnimateDiff's MotionWrapper in each layout, fp16.

The SDXL checkpoints are calibrated like the SD1.5 one, read back tensor by
tensor, and put through the WebUI's own config choice (sd_models_config).
Only the ones asked for are built, one after the other; each part's time
and peak memory is logged.  On two cores: slim SDXL 30 s and 7 GB, full SDXL
1 minute and 14 GB (2.9 and 6.5 GiB on disk), motion modules a few seconds
each and at most 5.4 GB.  Only the new parts, for an install that has the rest:

  /path/to/webui/venv/bin/python tests/live/tools/make_random_models.py \\
      --webui /path/to/webui --seed 1234 --skip-hf-cache --skip-checkpoint \\
      --skip-motion-module --motion-modules all --sdxl-slim --sdxl

Things done so the random models behave (see the project's host notes):
  * layers the architectures zero-initialise (UNet output conv, ResBlock
    output convs, transformer proj_out, motion-module proj_out) get small
    random values instead, or the UNet would predict exactly zero;
  * the UNet output conv is rescaled so the predicted noise has std ~1;
  * the CLIP final LayerNorm gets a non-zero bias (the WebUI's prompt
    emphasis divides by the mean of the text embedding);
  * the VAE posterior log-variance is pinned very low (-30), because the
    WebUI encodes every frame with an unseeded posterior.sample(); the
    latent mean is rescaled to std ~1 after the 0.18215 scale factor and the
    decoder output to std ~0.5, so images are neither flat nor clipped;
  * SDXL the same way (scale factor 0.13025); its UNet reads hidden layers of
    the text encoders, before their final LayerNorm, so these keep their
    init, and the UNet output loses its per-channel mean before its std is
    set to 1.

Run it with the WebUI's own Python (it imports ldm, transformers, torch and
the AnimateDiff extension from the install):

  /path/to/webui/venv/bin/python tests/live/tools/make_random_models.py \\
      --webui /path/to/webui --seed 1234

Options let you skip parts (--skip-checkpoint, --skip-motion-module,
--skip-hf-cache, and with --controlnet --skip-tile, --skip-ip-adapter,
--skip-clip-vision) and rename the outputs.  Only the ControlNet models, for
an install that has the rest:

  /path/to/webui/venv/bin/python tests/live/tools/make_random_models.py \\
      --webui /path/to/webui --seed 1234 --controlnet \\
      --skip-hf-cache --skip-checkpoint --skip-motion-module

The same seed gives the same files on the same torch version.  Takes 1-2
minutes on two CPU cores and peaks near 9 GB of memory; the checkpoint is
about 2 GB.  The ControlNet models are built one after the other: about 30 s
and 5.3 GB at most; 690 MiB, 43 MiB and 1.2 GiB on disk.
"""

import argparse
import gzip
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import time
import zipfile
from typing import ClassVar

CLIP_REPO = "openai/clip-vit-large-patch14"
BPE_NAME = "bpe_simple_vocab_16e6.txt.gz"
N_MERGES = 49152 - 256 - 2  # the CLIP tokenizer uses this many merges

TEXT_CONFIG = {
    "model_type": "clip_text_model",
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "projection_dim": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-05,
    "attention_dropout": 0.0,
    "dropout": 0.0,
    "initializer_range": 0.02,
    "initializer_factor": 1.0,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}

VISION_CONFIG = {
    "model_type": "clip_vision_model",
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "projection_dim": 768,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "num_channels": 3,
    "image_size": 224,
    "patch_size": 14,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-05,
    "attention_dropout": 0.0,
    "dropout": 0.0,
    "initializer_range": 0.02,
    "initializer_factor": 1.0,
}


def log(msg):
    print(f"[make_random_models {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--webui",
        required=True,
        help="root of the WebUI install (has webui.py, venv/, repositories/)",
    )
    ap.add_argument(
        "--seed", type=int, default=1234, help="seed for all random weights (default 1234)"
    )
    ap.add_argument(
        "--ckpt-name",
        default="random-sd15.safetensors",
        help="file name under models/Stable-diffusion/ (default random-sd15.safetensors)",
    )
    ap.add_argument(
        "--mm-name",
        default="mm_sd15_v2.safetensors",
        help="motion module file name in the AnimateDiff model folder (default mm_sd15_v2.safetensors)",
    )
    ap.add_argument(
        "--animatediff-dir",
        default=None,
        help="AnimateDiff extension folder (default: <webui>/extensions/sd-webui-animatediff)",
    )
    ap.add_argument(
        "--mm-dir",
        default=None,
        help="where to write the motion module (default: <animatediff-dir>/model, the extension's default model path)",
    )
    ap.add_argument("--hf-home", default=None, help="HF_HOME to fill (default: <webui>/hf_home)")
    ap.add_argument(
        "--bpe",
        default=None,
        help=f"path to {BPE_NAME}, or to an open-clip-torch / clip wheel containing it "
        "(default: found in the installed open_clip or clip package)",
    )
    ap.add_argument(
        "--zero-init-scale",
        type=float,
        default=0.1,
        help="layers that are zero-initialised get their default random init times this (default 0.1)",
    )
    ap.add_argument("--skip-hf-cache", action="store_true")
    ap.add_argument("--skip-checkpoint", action="store_true")
    ap.add_argument("--skip-motion-module", action="store_true")
    ap.add_argument(
        "--threads", type=int, default=0, help="torch threads (default: torch's choice)"
    )
    xl = ap.add_argument_group("SDXL and more AnimateDiff motion modules (opt-in)")
    xl.add_argument(
        "--sdxl",
        action="store_true",
        help="write a full-size SDXL base checkpoint (<--sdxl-name>, 6.5 GiB; peaks near 14 GB)",
    )
    xl.add_argument(
        "--sdxl-slim",
        action="store_true",
        help="write a slim SDXL: <--sdxl-slim-name> and a .yaml of the same name beside it "
        "(SDXL's blocks, widths and conditioning, --sdxl-slim-depth transformer layers per block)",
    )
    xl.add_argument(
        "--sdxl-name",
        default="random-sdxl.safetensors",
        help="file name under models/Stable-diffusion/ (default random-sdxl.safetensors)",
    )
    xl.add_argument(
        "--sdxl-slim-name",
        default="random-sdxl-slim.safetensors",
        help="file name under models/Stable-diffusion/ (default random-sdxl-slim.safetensors)",
    )
    xl.add_argument(
        "--sdxl-slim-depth",
        type=int,
        default=1,
        help="transformer layers per attention block of the slim SDXL (default 1; SDXL: 2 and 10)",
    )
    xl.add_argument(
        "--sdxl-vae-approx",
        action="store_true",
        help="write models/VAE-approx/vaeapprox-sdxl.pt, the SDXL live-preview decoder "
        "(implied by --sdxl and --sdxl-slim)",
    )
    xl.add_argument(
        "--skip-vae-approx", action="store_true", help="with --sdxl / --sdxl-slim: do not write it"
    )
    xl.add_argument(
        "--motion-modules",
        default="",
        metavar="LIST",
        help="extra motion modules, comma-separated: "
        + ", ".join(f"{k} ({v[1]})" for k, v in EXTRA_MOTION_MODULES.items())
        + "; 'all' for all of them; KEY=FILE writes one under another name",
    )
    cn = ap.add_argument_group("sd-webui-controlnet (with --controlnet)")
    cn.add_argument(
        "--controlnet",
        action="store_true",
        help="also write a tile ControlNet, an IP-Adapter and the CLIP-H image encoder",
    )
    cn.add_argument(
        "--controlnet-dir",
        default=None,
        help="the extension's folder (default: <webui>/extensions/sd-webui-controlnet)",
    )
    cn.add_argument(
        "--cn-model-dir",
        default=None,
        help="where to write the ControlNet and IP-Adapter models (default: <webui>/models/ControlNet)",
    )
    cn.add_argument(
        "--controlnet-annotator-models-path",
        default=None,
        help="the same-named WebUI flag, if you launch with it: clip_vision/clip_h.pth goes "
        "below it (default: as the extension resolves it, from config.json or its own "
        "annotator/downloads)",
    )
    cn.add_argument(
        "--tile-name",
        default="control_v11f1e_sd15_tile.safetensors",
        help="tile ControlNet file name (default control_v11f1e_sd15_tile.safetensors)",
    )
    cn.add_argument(
        "--ip-adapter-name",
        default="ip-adapter_sd15.safetensors",
        help="IP-Adapter file name (default ip-adapter_sd15.safetensors)",
    )
    cn.add_argument(
        "--cn-init",
        choices=("unet", "random"),
        default="unet",
        help="start the ControlNet encoder and the IP-Adapter key/value layers from the "
        "checkpoint's UNet (<--ckpt-name>, must exist; default) or from the classes' own init",
    )
    cn.add_argument(
        "--cn-control-scale",
        type=float,
        default=0.5,
        help="each ControlNet residual's std relative to the features it comes from (default 0.5)",
    )
    cn.add_argument("--skip-tile", action="store_true")
    cn.add_argument("--skip-ip-adapter", action="store_true")
    cn.add_argument("--skip-clip-vision", action="store_true")
    return ap.parse_args(argv)


# ---------------------------------------------------------------- tokenizer


def byte_unicode_table():
    """GPT-2 / CLIP byte-level BPE: map each byte to a printable character.

    Printable Latin-1 bytes map to themselves; the other 68 bytes map, in
    increasing byte order, to code points 256, 257, ...  The table order
    (printable bytes first) is the order of the first 256 vocabulary entries.
    """
    keep = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(0xA1, 0xAC + 1))
        + list(range(0xAE, 0xFF + 1))
    )
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    # order: the printable ones first, then the remapped ones
    return [table[b] for b in keep] + [table[b] for b in range(256) if b not in keep]


def read_bpe_bytes(bpe_arg):
    """Return the gzip-compressed bytes of the CLIP BPE merges file."""
    if bpe_arg:
        if bpe_arg.endswith(".whl") or zipfile.is_zipfile(bpe_arg):
            with zipfile.ZipFile(bpe_arg) as zf:
                names = [n for n in zf.namelist() if n.endswith(BPE_NAME)]
                if not names:
                    sys.exit(f"{bpe_arg} holds no {BPE_NAME}")
                return zf.read(names[0])
        with open(bpe_arg, "rb") as f:
            return f.read()
    for pkg in ("open_clip", "clip"):
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            continue
        for loc in spec.submodule_search_locations:
            path = os.path.join(loc, BPE_NAME)
            if os.path.isfile(path):
                log(f"CLIP BPE file: {path}")
                with open(path, "rb") as f:
                    return f.read()
    sys.exit(
        f"could not find {BPE_NAME}: pip install open-clip-torch==2.20.0 in this Python, or pass --bpe"
    )


def clip_vocab_and_merges(bpe_gz):
    lines = gzip.decompress(bpe_gz).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : N_MERGES + 1]]
    assert len(merges) == N_MERGES and all(len(m) == 2 for m in merges), "unexpected BPE file"
    base = byte_unicode_table()
    tokens = base + [t + "</w>" for t in base] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    assert len(tokens) == 49408
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == len(tokens), "duplicate tokens"
    return vocab, merges


def write_hf_cache(hf_home, bpe_arg):
    vocab, merges = clip_vocab_and_merges(read_bpe_bytes(bpe_arg))
    files = {
        "vocab.json": json.dumps(vocab, ensure_ascii=False),
        "merges.txt": "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
        "special_tokens_map.json": json.dumps(
            {
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
            },
            indent=2,
        ),
        "tokenizer_config.json": json.dumps(
            {
                "tokenizer_class": "CLIPTokenizer",
                "name_or_path": CLIP_REPO,
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
                "add_prefix_space": False,
                "do_lower_case": True,
                "errors": "replace",
                "model_max_length": 77,
            },
            indent=2,
        ),
        "config.json": json.dumps(
            {
                "_name_or_path": CLIP_REPO,
                "architectures": ["CLIPModel"],
                "model_type": "clip",
                "initializer_factor": 1.0,
                "logit_scale_init_value": 2.6592,
                "projection_dim": 768,
                "text_config": TEXT_CONFIG,
                "vision_config": VISION_CONFIG,
            },
            indent=2,
        ),
    }
    digest = hashlib.sha1()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].encode("utf-8"))
    revision = digest.hexdigest()
    repo_dir = os.path.join(hf_home, "hub", "models--" + CLIP_REPO.replace("/", "--"))
    snap = os.path.join(repo_dir, "snapshots", revision)
    if os.path.isdir(os.path.join(repo_dir, "snapshots")):
        for old in os.listdir(
            os.path.join(repo_dir, "snapshots")
        ):  # stale snapshots of earlier runs
            if old != revision:
                shutil.rmtree(os.path.join(repo_dir, "snapshots", old))
    os.makedirs(snap, exist_ok=True)
    os.makedirs(os.path.join(repo_dir, "refs"), exist_ok=True)
    for name, text in files.items():
        with open(os.path.join(snap, name), "w", encoding="utf-8") as f:
            f.write(text)
    with open(os.path.join(repo_dir, "refs", "main"), "w") as f:
        f.write(revision)
    log(f"HF cache: {snap}")
    return snap


def check_tokenizer():
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(CLIP_REPO)
    ids = tok("a photo of a cat")["input_ids"]
    expected = [49406, 320, 1125, 539, 320, 2368, 49407]
    if ids != expected:
        sys.exit(f"tokenizer check failed: {ids} != {expected}")
    log(f"tokenizer check ok: 'a photo of a cat' -> {ids}")
    return tok


# ---------------------------------------------------------------- weights


def refill_zeroed(model, scale, torch):
    """Give layers that the architecture zero-initialised small random weights."""
    n = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.nn.Parameter) or not hasattr(module, "reset_parameters"):
            continue
        if isinstance(module, (torch.nn.LayerNorm, torch.nn.GroupNorm)):
            continue
        if torch.count_nonzero(weight) == 0:
            module.reset_parameters()
            with torch.no_grad():
                for p in module.parameters(recurse=False):
                    p.mul_(scale)
            n += 1
    return n


def sort_safetensors_header(path):
    """Rewrite a .safetensors header in a fixed order, in place.

    safetensors 0.4 writes __metadata__ in a random order (a Rust HashMap), so
    the same tensors would give different bytes from run to run.  The header
    keeps its length: the metadata sorted by key, then the tensors by offset,
    compact JSON padded with spaces as safetensors pads it.
    """
    with open(path, "r+b") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        meta = header.pop("__metadata__", None)
        ordered = {"__metadata__": dict(sorted(meta.items()))} if meta else {}
        ordered.update(sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]))
        raw = json.dumps(ordered, separators=(",", ":")).encode()
        if len(raw) > n:
            sys.exit(f"{path}: unexpected safetensors header")
        f.seek(8)
        f.write(raw + b" " * (n - len(raw)))


def add_paths(webui):
    sys.path.insert(0, os.path.join(webui, "repositories", "stable-diffusion-stability-ai"))


def build_checkpoint(args, out_path, torch):
    import ldm.modules.encoders.modules as encoders
    import transformers
    from ldm.util import instantiate_from_config
    from omegaconf import OmegaConf

    # Build the CLIP text model from the config in the cache, never from weights.
    def text_model_from_config(name, *a, **k):
        return transformers.CLIPTextModel(transformers.CLIPTextConfig.from_pretrained(name))

    encoders.CLIPTextModel.from_pretrained = text_model_from_config

    config = OmegaConf.load(os.path.join(args.webui, "configs", "v1-inference.yaml"))
    torch.manual_seed(args.seed)
    log("building LatentDiffusion from configs/v1-inference.yaml (random init) ...")
    model = instantiate_from_config(config.model)
    model.eval()
    unet = model.model.diffusion_model
    vae = model.first_stage_model
    clip = model.cond_stage_model
    gen = torch.Generator().manual_seed(args.seed + 1)

    with torch.no_grad():
        n = refill_zeroed(unet, args.zero_init_scale, torch)
        log(f"UNet: {n} zero-initialised layers refilled")
        n = refill_zeroed(vae, args.zero_init_scale, torch)
        if n:
            log(f"VAE: {n} zero-initialised layers refilled")

        # CLIP: final LayerNorm with a non-zero (mostly positive) bias.
        ln = clip.transformer.text_model.final_layer_norm
        ln.weight.copy_(1.0 + 0.1 * torch.randn(ln.weight.shape, generator=gen))
        ln.bias.copy_(0.2 + 0.1 * torch.randn(ln.bias.shape, generator=gen))

        # VAE: posterior log-variance pinned at the clamp floor; mean calibrated.
        qc = vae.quant_conv
        zc = qc.out_channels // 2
        qc.weight[zc:].zero_()
        qc.bias[zc:].fill_(-30.0)
        img = torch.rand((2, 3, 64, 64), generator=gen) * 2 - 1
        moments = qc(vae.encoder(img))
        mean = moments[:, :zc] * model.scale_factor
        s = float(mean.std())
        m = float(mean.mean())
        qc.weight[:zc].div_(s)
        qc.bias[:zc].sub_(m / model.scale_factor).div_(s)
        check = vae.encode(img).sample() * model.scale_factor
        log(
            f"VAE latent (scaled) mean {float(check.mean()):+.3f} std {float(check.std()):.3f}, "
            f"posterior std {float(vae.encode(img).std.max()):.2e}"
        )

        # VAE decoder: output std ~0.5 around 0 so decoded pixels are not clipped.
        z = torch.randn((2, 4, 8, 8), generator=gen)
        out = vae.decode(z / model.scale_factor)
        co = vae.decoder.conv_out
        co.weight.mul_(0.5 / float(out.std()))
        co.bias.mul_(0.5 / float(out.std())).sub_(float(out.mean()) * 0.5 / float(out.std()))
        out = vae.decode(z / model.scale_factor)
        log(f"VAE decode mean {float(out.mean()):+.3f} std {float(out.std()):.3f}")

        # UNet: predicted noise with std ~1 for unit-variance input.
        tok = clip.tokenizer(
            ["", "a photo of a cat"],
            truncation=True,
            max_length=77,
            padding="max_length",
            return_tensors="pt",
        )
        context = clip.transformer(input_ids=tok["input_ids"]).last_hidden_state
        x = torch.randn((2, 4, 8, 8), generator=gen)
        t = torch.tensor([500, 500])
        eps = unet(x, t, context=context)
        conv = unet.out[-1]
        s = float(eps.std())
        conv.weight.div_(s)
        conv.bias.sub_(eps.mean(dim=(0, 2, 3))).div_(s)
        eps = unet(x, t, context=context)
        log(
            f"UNet eps mean {float(eps.mean()):+.3f} std {float(eps.std()):.3f}; "
            f"text embedding mean {float(context.mean()):+.3f}"
        )

    sd = model.state_dict()
    weight_names = {n for n, _ in model.named_parameters()}
    out = {}
    for k, v in sd.items():
        v = v.detach().contiguous()
        if v.is_floating_point() and k in weight_names:
            v = v.half()
        out[k] = v
    from safetensors.torch import save_file

    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    tmp = out_path + ".tmp"
    save_file(
        out,
        tmp,
        metadata={
            "format": "pt",
            "random_weights": "true",
            "seed": str(args.seed),
            "made_by": "sd-webui-noise-rectification tests/live/tools/make_random_models.py",
        },
    )
    sort_safetensors_header(tmp)
    os.replace(tmp, out_path)
    log(f"checkpoint: {out_path} ({len(out)} tensors, {os.path.getsize(out_path) / 2**30:.2f} GiB)")
    del model, sd, out


def build_motion_module(args, out_path, torch, mm_type="AnimateDiffV2", seed_offset=2, kind=None):
    """A motion module from AnimateDiff's own MotionWrapper, in the layout of `mm_type`.

    AnimateDiff picks the architecture from the file's keys alone
    (MotionModuleType.get_mm_type): a mid block means V2, or AnimateLCM when the
    file has no position-encoding buffers ("pe"); without one, a fourth down
    block means SD1.5 (V3 if the position encoding is 32 frames long, V1 if 24),
    otherwise SDXL (AnimateDiff-SDXL if 32, HotShot-XL if 24).  The wrapper
    builds these very layouts from the type, so the file is read back as
    `mm_type`; this is checked, and that AnimateDiff's own load accepts it.
    `kind` None keeps the metadata the mm_sd15_v2 file always had.
    """
    ad_dir = args.animatediff_dir or os.path.join(args.webui, "extensions", "sd-webui-animatediff")
    if not os.path.isfile(os.path.join(ad_dir, "motion_module.py")):
        sys.exit(f"no motion_module.py in {ad_dir}: pass --animatediff-dir")
    if ad_dir not in sys.path:
        sys.path.insert(0, ad_dir)
    from motion_module import MotionModuleType, MotionWrapper  # the extension's own classes

    wanted = MotionModuleType[mm_type]
    torch.manual_seed(args.seed + seed_offset)
    mm = MotionWrapper(mm_name=os.path.basename(out_path), mm_hash=None, mm_type=wanted)
    with torch.no_grad():
        n = refill_zeroed(mm, args.zero_init_scale, torch)
    sd = {k: v.detach().half().contiguous() for k, v in mm.state_dict().items()}
    pe_keys = [k for k in sd if k.endswith(".pos_encoder.pe")]
    pe_len = sd[pe_keys[0]].shape[1]
    if wanted == MotionModuleType.AnimateLCM:
        # AnimateLCM files carry no position-encoding buffers; AnimateDiff recognises
        # them by that and recomputes the encoding (64 frames) when it loads them.
        sd = {k: v for k, v in sd.items() if k not in pe_keys}
        if any("pe" in k for k in sd):
            sys.exit("a motion-module key other than the position encoding contains 'pe'")
    guessed = MotionModuleType.get_mm_type(sd)
    if guessed != wanted:
        sys.exit(f"the extension would read this file as {guessed}, not {wanted.name}")
    # Loaded as AnimateDiff's AnimateDiffMM.load does (strict except for AnimateLCM).
    check = MotionWrapper(mm_name="check", mm_hash=None, mm_type=guessed)
    lcm = guessed == MotionModuleType.AnimateLCM
    result = check.load_state_dict(sd, strict=not lcm)
    if lcm and (result.unexpected_keys or sorted(result.missing_keys) != sorted(pe_keys)):
        sys.exit(
            f"AnimateLCM load: missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]}"
        )
    if kind is None:
        from safetensors.torch import save_file

        os.makedirs(os.path.dirname(out_path), exist_ok=True)
        save_file(
            sd,
            out_path,
            metadata={"format": "pt", "random_weights": "true", "seed": str(args.seed)},
        )
        sort_safetensors_header(out_path)
    else:
        save_safetensors(sd, out_path, args, kind)
    blocks = f"{len(mm.down_blocks)} down / {len(mm.up_blocks)} up blocks"
    blocks += ", mid block" if hasattr(mm, "mid_block") else ", no mid block"
    log(
        f"motion module: {out_path} ({len(sd)} tensors, {n} zero-initialised layers refilled, "
        f"{os.path.getsize(out_path) / 2**20:.0f} MiB, {blocks}, position encoding "
        f"{'not stored' if lcm else f'{pe_len} frames'}; read as {guessed.name})"
    )


# Extra motion modules (--motion-modules): key -> (MotionModuleType name, default file
# name, seed offset).  The file names are the ones AnimateDiff's documentation and model
# repository use; AnimateDiff's UI lists files with "xl" in the name only for SDXL
# checkpoints and files with "sd1" only for SD1.x ones.
EXTRA_MOTION_MODULES = {
    "sd15_v3": ("AnimateDiffV3", "mm_sd15_v3.safetensors", 20),
    "animatelcm": ("AnimateLCM", "mm_sd15_AnimateLCM.safetensors", 21),
    "sdxl_v10_beta": ("AnimateDiffXL", "mm_sdxl_v10_beta.safetensors", 22),
    "hotshotxl": ("HotShotXL", "hsxl_temporal_layers.safetensors", 23),
}


def parse_motion_modules(spec):
    """'sd15_v3,animatelcm=other.safetensors' or 'all' -> [(key, file name), ...]."""
    out = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        key, _, name = item.partition("=")
        keys = list(EXTRA_MOTION_MODULES) if key == "all" else [key]
        for k in keys:
            if k not in EXTRA_MOTION_MODULES:
                sys.exit(
                    f"--motion-modules: unknown {k!r}; known: all, {', '.join(EXTRA_MOTION_MODULES)}"
                )
            out.append((k, name if name and key != "all" else EXTRA_MOTION_MODULES[k][1]))
    return out


# ---------------------------------------------------------------- WebUI modules


def stub_webui_modules(args, torch):
    """Make the WebUI's own `modules.*` importable outside the WebUI.

    `modules` becomes a package on the install's modules/ folder; the modules
    that need a running WebUI (devices, shared, modelloader) get small
    stand-ins (CPU, fp32, the install's config.json, no downloads).  The
    others (paths, paths_internal, safe, sd_models_config, sd_vae_approx, ...)
    are the install's own; import them with import_webui.
    """
    import types

    if getattr(sys.modules.get("modules"), "_random_models_stub", False):
        return
    module = types.ModuleType("modules")
    module.__path__ = [os.path.join(args.webui, "modules")]
    module._random_models_stub = True
    sys.modules["modules"] = module
    cpu = torch.device("cpu")
    devices = types.ModuleType("modules.devices")
    devices.cpu = devices.device = cpu
    devices.dtype = devices.dtype_unet = devices.dtype_vae = torch.float32
    devices.get_device_for = lambda task: cpu
    shared = types.ModuleType("modules.shared")
    config_path = os.path.join(args.webui, "config.json")
    opts = {}
    if os.path.isfile(config_path):
        with open(config_path, encoding="utf-8") as f:
            opts = json.load(f)
    shared.opts = types.SimpleNamespace(data=opts)
    shared.cmd_opts = types.SimpleNamespace(
        controlnet_annotator_models_path=args.controlnet_annotator_models_path,
        controlnet_loglevel="WARNING",
        disable_safe_unpickle=False,
        do_not_download_clip=False,
        disable_model_loading_ram_optimization=False,
        no_half=True,
    )
    shared.data_path = args.webui
    shared.sd_configs_path = os.path.join(args.webui, "configs")
    shared.sd_default_config = os.path.join(shared.sd_configs_path, "v1-inference.yaml")
    modelloader = types.ModuleType("modules.modelloader")

    def load_file_from_url(url, *a, **k):
        raise RuntimeError(f"offline: wanted to download {url}")

    modelloader.load_file_from_url = load_file_from_url
    for name, stub in (("devices", devices), ("shared", shared), ("modelloader", modelloader)):
        sys.modules["modules." + name] = stub
        setattr(module, name, stub)


def import_webui(name):
    """modules.<name> from the install (after stub_webui_modules).  Its
    modules.paths_internal reads --data-dir / --models-dir from sys.argv, so it
    sees an empty command line here: the install's default folders."""
    import importlib

    saved = sys.argv
    sys.argv = sys.argv[:1]
    try:
        return importlib.import_module("modules." + name)
    finally:
        sys.argv = saved


# ---------------------------------------------------------------- SDXL

SAFETENSORS_DTYPES = {
    "float16": "F16",
    "bfloat16": "BF16",
    "float32": "F32",
    "float64": "F64",
    "int64": "I64",
    "int32": "I32",
    "uint8": "U8",
    "bool": "BOOL",
}


def save_safetensors_streaming(tensors, convert, path, args, kind, torch):
    """Write {name: tensor} as .safetensors, converting and writing one tensor at a time.

    For models too big to hold twice (safetensors' save_file keeps a bytes copy
    of every tensor until the end).  The file has the form save_safetensors
    leaves: the header with __metadata__ first (keys sorted), then the tensors
    in file order (here: by name), compact JSON padded with spaces to a multiple
    of 8.  Then every tensor is read back with safetensors and compared with
    `convert(name, tensor)`.
    """
    import struct

    from safetensors import safe_open

    names = sorted(tensors)
    metadata = {
        "format": "pt",
        "kind": kind,
        "made_by": "sd-webui-noise-rectification tests/live/tools/make_random_models.py",
        "random_weights": "true",
        "seed": str(args.seed),
    }
    header = {"__metadata__": dict(sorted(metadata.items()))}
    offset = 0
    for name in names:
        t = tensors[name]
        dtype = convert(name, t.reshape(-1)[:1]).dtype  # the stored dtype
        size = t.numel() * torch.empty((), dtype=dtype).element_size()
        header[name] = {
            "dtype": SAFETENSORS_DTYPES[str(dtype).removeprefix("torch.")],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name in names:
            v = convert(name, tensors[name]).contiguous()
            f.write(v.reshape(-1).view(torch.uint8).numpy().tobytes())
            del v
    with safe_open(tmp, framework="pt") as f:
        if sorted(f.keys()) != names or f.metadata() != metadata:
            sys.exit(f"{tmp}: keys or metadata did not read back")
    # safetensors maps the file; the pages read stay in the process's memory until
    # the file is closed, so read it back a few hundred MiB at a time.
    bad, pending = [], list(names)
    while pending:
        with safe_open(tmp, framework="pt") as f:
            done = 0
            while pending and done < 2**28:
                name = pending.pop(0)
                loaded = f.get_tensor(name)
                done += loaded.numel() * loaded.element_size()
                if not torch.equal(loaded, convert(name, tensors[name])):
                    bad.append(name)
                del loaded
    if bad:
        sys.exit(f"{tmp}: tensors did not read back unchanged: {bad[:5]}")
    os.replace(tmp, path)


def write_slim_sdxl_config(base_config, out_path, depth):
    """<checkpoint stem>.yaml: the WebUI's SDXL config with `depth` transformer layers per block.

    The WebUI uses a .yaml named like the checkpoint, beside it, instead of the
    config it would guess (modules/sd_models_config.py,
    find_checkpoint_config_near_filename).  Only the transformer_depth line
    changes ([1, 2, 10] -> [depth] * 3; the middle block takes the last entry,
    as in sd_xl_base.yaml, and the first is unused there too: the top level has
    no attention); every block, width and conditioning stays SDXL's.
    """
    import re

    with open(base_config, encoding="utf-8") as f:
        text = f.read()
    pattern = re.compile(r"^( *)transformer_depth: \[1, 2, 10\].*$", re.M)
    if len(pattern.findall(text)) != 1:
        sys.exit(f"{base_config}: no single 'transformer_depth: [1, 2, 10]' line")
    text = pattern.sub(
        lambda m: (
            f"{m.group(1)}transformer_depth: [{depth}, {depth}, {depth}]"
            "  # sd_xl_base.yaml: [1, 2, 10]; the middle block takes the last entry"
        ),
        text,
    )
    head = (
        "# A slim SDXL for live tests, written by sd-webui-noise-rectification\n"
        "# tests/live/tools/make_random_models.py: Stability-AI/generative-models\n"
        "# configs/inference/sd_xl_base.yaml with fewer transformer layers per block.\n"
    )
    path = os.path.splitext(out_path)[0] + ".yaml"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(head + text)
    return path


def build_sdxl(args, out_path, torch, slim):
    """An SDXL base checkpoint from sgm's DiffusionEngine and the WebUI's own SDXL config.

    Random weights, fp16 (the buffers keep their dtype), every key the real
    name.  `slim`: the same with args.sdxl_slim_depth transformer layers per
    block and a .yaml beside the checkpoint that tells the WebUI so.  The text
    encoders are built as the WebUI builds them, from configs: CLIP ViT-L from
    the Hugging Face cache's config.json (tokenizer from the cache too),
    OpenCLIP ViT-bigG-14 from open_clip's own model config with pretrained=None
    (its image tower, which sgm deletes at once, is built on the meta device:
    no memory).  Calibrated like the SD1.5 checkpoint (see build_checkpoint).
    """
    import types

    import open_clip
    import open_clip.model
    import transformers
    from omegaconf import OmegaConf

    stub_webui_modules(args, torch)
    sys.path.insert(0, os.path.join(args.webui, "repositories", "generative-models"))
    from sgm.util import instantiate_from_config

    sd_models_config = import_webui("sd_models_config")
    base_config = sd_models_config.config_sdxl  # what the WebUI picks for SDXL base
    config_path = base_config
    if slim:
        config_path = write_slim_sdxl_config(base_config, out_path, args.sdxl_slim_depth)
        log(f"slim SDXL config: {config_path}")
    config = OmegaConf.load(config_path)
    # As the WebUI's repair_config (modules/sd_models.py) does: no gradient
    # checkpointing, plain attention in the VAE without xformers (same weights).
    config.model.params.network_config.params.use_checkpoint = False
    ddconfig = config.model.params.first_stage_config.params.ddconfig
    if ddconfig.attn_type == "vanilla-xformers":
        ddconfig.attn_type = "vanilla"

    build_vision_tower = open_clip.model._build_vision_tower
    create = open_clip.create_model_and_transforms
    from_pretrained = transformers.CLIPTextModel.__dict__.get("from_pretrained")

    def vision_tower_on_meta(*a, **k):
        with torch.device("meta"):
            tower = build_vision_tower(*a, **k)
        tower._apply = lambda fn, recurse=True: tower  # create_model's .to(cpu) keeps it on meta
        return tower

    def create_without_pretrained(*a, pretrained=None, **k):
        return create(*a, pretrained=None, **k)

    def text_model_from_config(name, *a, **k):
        return transformers.CLIPTextModel(transformers.CLIPTextConfig.from_pretrained(name))

    offset = 12 if slim else 10
    open_clip.model._build_vision_tower = vision_tower_on_meta
    open_clip.create_model_and_transforms = create_without_pretrained
    transformers.CLIPTextModel.from_pretrained = text_model_from_config
    try:
        torch.manual_seed(args.seed + offset)
        log(f"building DiffusionEngine from {os.path.basename(config_path)} (random init) ...")
        model = instantiate_from_config(config.model)
    finally:
        open_clip.model._build_vision_tower = build_vision_tower
        open_clip.create_model_and_transforms = create
        if from_pretrained is None:
            del transformers.CLIPTextModel.from_pretrained
        else:
            transformers.CLIPTextModel.from_pretrained = from_pretrained
    model.eval()
    unet = model.model.diffusion_model
    vae = model.first_stage_model
    clip_l, clip_g = model.conditioner.embedders[:2]
    n_params = sum(p.numel() for p in model.parameters())
    log(
        f"{n_params / 1e9:.2f} B parameters (UNet {sum(p.numel() for p in unet.parameters()) / 1e9:.2f} B)"
    )
    gen = torch.Generator().manual_seed(args.seed + offset + 1)

    with torch.no_grad():
        n = refill_zeroed(unet, args.zero_init_scale, torch)
        log(f"UNet: {n} zero-initialised layers refilled")
        n = refill_zeroed(vae, args.zero_init_scale, torch)
        if n:
            log(f"VAE: {n} zero-initialised layers refilled")

        # VAE: posterior log-variance pinned at the clamp floor; mean calibrated.
        scale = model.scale_factor
        qc = vae.quant_conv
        zc = qc.out_channels // 2
        qc.weight[zc:].zero_()
        qc.bias[zc:].fill_(-30.0)
        img = torch.rand((2, 3, 64, 64), generator=gen) * 2 - 1
        mean = qc(vae.encoder(img))[:, :zc] * scale
        s = rounded(float(mean.std()))
        m = rounded(float(mean.mean()))
        qc.weight[:zc].div_(s)
        qc.bias[:zc].sub_(m / scale).div_(s)
        check = vae.encode(img) * scale  # sgm's inference wrapper returns a posterior sample
        moments = qc(vae.encoder(img))
        log(
            f"VAE latent (scaled) mean {float(check.mean()):+.3f} std {float(check.std()):.3f}, "
            f"posterior std {float(torch.exp(0.5 * moments[:, zc:].clamp(-30, 20)).max()):.2e}"
        )

        # VAE decoder: output std ~0.5 around 0.
        z = torch.randn((2, 4, 8, 8), generator=gen)
        out = vae.decode(z / scale)
        f = rounded(0.5 / float(out.std()))
        co = vae.decoder.conv_out
        co.weight.mul_(f)
        co.bias.mul_(f).sub_(rounded(float(out.mean()) * f))
        out = vae.decode(z / scale)
        log(f"VAE decode mean {float(out.mean()):+.3f} std {float(out.std()):.3f}")

        # The conditioning the WebUI gives the UNet: CLIP-L hidden layer 11 and
        # OpenCLIP bigG's penultimate layer side by side (77 x 2048), and the
        # vector of bigG's pooled output and the three size embeddings (2816).
        prompts = ["", "a photo of a cat"]
        tok = clip_l.tokenizer(
            prompts, truncation=True, max_length=77, padding="max_length", return_tensors="pt"
        )
        hidden = clip_l.transformer(input_ids=tok["input_ids"], output_hidden_states=True)
        cross_l = hidden.hidden_states[clip_l.layer_idx]
        out_g = clip_g.encode_with_transformer(open_clip.tokenize(prompts))
        context = torch.cat([cross_l, out_g[clip_g.layer]], dim=-1)
        size = torch.tensor([[64.0, 64.0]] * len(prompts))
        crop = torch.zeros((len(prompts), 2))
        embed_size, embed_crop, embed_target = model.conditioner.embedders[2:]
        sizes = [embed_size(size), embed_crop(crop), embed_target(size)]
        y = torch.cat([out_g["pooled"], *sizes], dim=-1)
        unet_params = config.model.params.network_config.params
        if (
            context.shape[-1] != unet_params.context_dim
            or y.shape[-1] != unet_params.adm_in_channels
        ):
            sys.exit(f"conditioning {tuple(context.shape)} / {tuple(y.shape)} is not SDXL's")
        log(
            f"text conditioning {tuple(context.shape)}: CLIP-L mean {float(cross_l.mean()):+.3f} "
            f"std {float(cross_l.std()):.3f}, bigG mean {float(out_g[clip_g.layer].mean()):+.3f} "
            f"std {float(out_g[clip_g.layer].std()):.3f}; vector {tuple(y.shape)}"
        )

        # UNet: predicted noise with std ~1 for unit-variance input.
        x = torch.randn((2, 4, 8, 8), generator=gen)
        t = torch.tensor([500, 500])
        eps = unet(x, t, context=context, y=y)
        conv = unet.out[-1]
        shift = torch.tensor([rounded(float(v)) for v in eps.mean(dim=(0, 2, 3))])
        s = rounded(float((eps - shift[:, None, None]).std()))
        conv.weight.div_(s)
        conv.bias.sub_(shift).div_(s)
        eps = unet(x, t, context=context, y=y)
        log(f"UNet eps mean {float(eps.mean()):+.3f} std {float(eps.std()):.3f}")
        del hidden, out_g, context, y, eps

    weight_names = {n for n, _ in model.named_parameters()}

    def convert(name, v):
        v = v.detach()
        return v.half() if v.is_floating_point() and name in weight_names else v

    sd = model.state_dict()
    kind = f"sdxl base, transformer depth {args.sdxl_slim_depth}" if slim else "sdxl base"
    save_safetensors_streaming(sd, convert, out_path, args, kind, torch)

    # What the WebUI makes of the file: the config it picks (sd_models_config, the
    # install's own code, on the file's keys and shapes) and the SDXL / SSD-1B test
    # of modules/sd_models.py set_model_type.
    from safetensors import safe_open

    with safe_open(out_path, framework="pt") as f:
        shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}
    on_meta = {k: torch.empty(v, device="meta") for k, v in shapes.items()}
    guessed = sd_models_config.guess_model_config_from_state_dict(on_meta, out_path)
    if guessed != sd_models_config.config_sdxl:
        sys.exit(f"the WebUI would build {out_path} from {guessed}, not {base_config}")
    info = types.SimpleNamespace(filename=out_path)  # stands in for a CheckpointInfo
    near = sd_models_config.find_checkpoint_config_near_filename(info)
    if (near is not None) != slim or (slim and os.path.abspath(near) != config_path):
        sys.exit(f"the WebUI would take the config beside {out_path} to be {near}")
    ssd_key = "model.diffusion_model.middle_block.1.transformer_blocks.0.attn1.to_q.weight"
    if ssd_key not in shapes:
        sys.exit(f"{out_path} would be taken for SSD-1B (no {ssd_key})")
    used = os.path.relpath(near or guessed, args.webui)
    log(
        f"SDXL checkpoint: {out_path} ({len(sd)} tensors, {n_params / 1e9:.2f} B parameters, "
        f"{os.path.getsize(out_path) / 2**30:.2f} GiB); the WebUI reads it as SDXL with {used}"
    )
    del model, sd


def build_vae_approx_sdxl(args, torch):
    """models/VAE-approx/vaeapprox-sdxl.pt: the "Approx NN" live-preview decoder for SDXL.

    The WebUI's own VAEApprox class (modules/sd_vae_approx.py), random weights
    scaled so that previews are neither flat nor clipped, fp32 like its
    model.pt, at the path the WebUI loads it from (without it the first SDXL
    request with live previews tries to download it).  Written so that the
    WebUI's safe unpickler accepts it; loaded back with that check.
    """
    stub_webui_modules(args, torch)
    sd_vae_approx = import_webui("sd_vae_approx")
    paths = import_webui("paths")
    safe = import_webui("safe")  # importing it wraps torch.load in its check
    path = os.path.join(paths.models_path, "VAE-approx", "vaeapprox-sdxl.pt")
    torch.manual_seed(args.seed + 14)
    net = sd_vae_approx.VAEApprox(latent_channels=4)
    gen = torch.Generator().manual_seed(args.seed + 15)
    with torch.no_grad():
        z = torch.randn((2, 4, 8, 8), generator=gen)
        f = rounded(0.5 / float(net(z).std()))
        net.conv8.weight.mul_(f)
        net.conv8.bias.mul_(f)
        out = net(z)
    sd = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    save_pth_for_safe_unpickler(sd, path, torch)
    safe.check_pt(path, None)
    check = sd_vae_approx.VAEApprox(latent_channels=4)
    check.load_state_dict(torch.load(path, map_location="cpu"))  # the WebUI's checked load
    bad = [k for k, v in check.state_dict().items() if not torch.equal(v, sd[k])]
    if bad:
        sys.exit(f"{path}: tensors did not load unchanged: {bad[:5]}")
    log(
        f"SDXL live-preview decoder: {path} ({len(sd)} tensors, {os.path.getsize(path) / 2**10:.0f} KiB, "
        f"passes the WebUI's safe check); output for unit latents mean {float(out.mean()):+.3f} "
        f"std {float(out.std()):.3f}"
    )


# ---------------------------------------------------------------- ControlNet


def import_controlnet(args, torch):
    """Make sd-webui-controlnet's own modules importable outside the WebUI.

    Its code imports modules.devices, modules.shared and modules.modelloader;
    these get the stand-ins of stub_webui_modules.  Other WebUI modules
    (modules.safe) are the install's own.  `scripts` is bound to the
    extension's scripts folder, which is a namespace package that
    repositories/generative-models/scripts would shadow.
    """
    import types

    cn_dir = args.controlnet_dir
    if not os.path.isfile(os.path.join(cn_dir, "scripts", "cldm.py")):
        sys.exit(
            f"no scripts/cldm.py in {cn_dir}: install sd-webui-controlnet or pass --controlnet-dir"
        )
    sys.path.insert(0, os.path.join(args.webui, "repositories", "generative-models"))
    sys.path.insert(0, cn_dir)  # for its `annotator` package
    stub_webui_modules(args, torch)
    scripts = types.ModuleType("scripts")
    scripts.__path__ = [os.path.join(cn_dir, "scripts")]
    sys.modules["scripts"] = scripts


def rounded(x, digits=3):
    """A calibration factor to a few significant digits, so that last-bit
    differences between machines or thread counts rarely change the file."""
    return float(f"{x:.{digits - 1}e}")


def unet_tensors(args, names):
    """{name: fp32 tensor} from the checkpoint's UNet (model.diffusion_model.<name>)."""
    from safetensors import safe_open

    path = os.path.join(args.webui, "models", "Stable-diffusion", args.ckpt_name)
    if not os.path.isfile(path):
        sys.exit(
            f"--cn-init unet needs the checkpoint {path}: write it first or pass --cn-init random"
        )
    prefix = "model.diffusion_model."
    with safe_open(path, framework="pt") as f:
        keys = set(f.keys())
        return {n: f.get_tensor(prefix + n).float() for n in names if prefix + n in keys}


def save_safetensors(sd, path, args, kind):
    from safetensors.torch import save_file

    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    save_file(
        sd,
        tmp,
        metadata={
            "format": "pt",
            "random_weights": "true",
            "seed": str(args.seed),
            "kind": kind,
            "made_by": "sd-webui-noise-rectification tests/live/tools/make_random_models.py",
        },
    )
    sort_safetensors_header(tmp)
    os.replace(tmp, path)


def save_pth_for_safe_unpickler(sd, path, torch):
    """torch.save, then drop the zip entries the WebUI's modules/safe.py refuses.

    A torch zip holds <name>/data.pkl, data/N, version, byteorder and
    .data/serialization_id (all allowed) plus .format_version and
    .storage_alignment (refused: "bad file inside ...").  torch.load reads the
    file without those two.  Entries are stored, dated 1980-01-01.
    """
    stem = os.path.splitext(os.path.basename(path))[0]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    raw, tmp = path + ".torch.tmp", path + ".tmp"
    torch.save(sd, raw)
    with zipfile.ZipFile(raw) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            inner = info.filename.split("/", 1)[1]
            if inner in (".format_version", ".storage_alignment"):
                continue
            out = zipfile.ZipInfo(f"{stem}/{inner}", date_time=(1980, 1, 1, 0, 0, 0))
            out.compress_type = zipfile.ZIP_STORED
            with (
                src.open(info) as fin,
                dst.open(out, "w", force_zip64=info.file_size > 2**31) as fout,
            ):
                shutil.copyfileobj(fin, fout, 2**24)
    os.remove(raw)
    os.replace(tmp, path)


def build_clip_vision(args, torch):
    """CLIP ViT-H image encoder at the path sd-webui-controlnet loads it from.

    Returns its output for a test picture (for the IP-Adapter check)."""
    import numpy as np
    from annotator import clipvision  # the extension's module: config, path and loader
    from modules import safe  # the WebUI's own .pth check; importing it wraps torch.load
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    path = os.path.join(clipvision.models_path, "clip_vision", "clip_h.pth")
    torch.manual_seed(args.seed + 3)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**clipvision.config_clip_h))
    sd = {}
    for k, v in model.state_dict().items():
        v = v.detach()
        sd[k] = (v.half() if v.is_floating_point() else v.clone()).contiguous()
    del model
    save_pth_for_safe_unpickler(sd, path, torch)
    safe.check_pt(path, None)

    # Load it as the extension does inside the WebUI (torch.load, which modules.safe
    # has replaced with its checked load, then load_state_dict(strict=False)), and
    # check that every key arrived unchanged.
    detector = clipvision.ClipVisionDetector("clip_h", low_vram=True)
    loaded = detector.model.state_dict()
    if set(loaded) != set(sd):
        sys.exit(f"CLIP-H keys differ from the model's: {sorted(set(loaded) ^ set(sd))[:5]}")
    bad = [k for k, v in sd.items() if not torch.equal(loaded[k].to(v.dtype), v)]
    if bad:
        sys.exit(f"CLIP-H tensors did not load unchanged: {bad[:5]}")
    n = len(sd)
    del sd, loaded
    gen = np.random.default_rng(args.seed)
    picture = gen.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    out = detector(picture)
    embeds = out["image_embeds"]
    log(
        f"CLIP-H image encoder: {path} ({n} tensors, {os.path.getsize(path) / 2**30:.2f} GiB, "
        f"passes the WebUI's safe check); image embeds {tuple(embeds.shape)} std {float(embeds.std()):.3f}"
    )
    del detector
    return {"image_embeds": embeds}


def build_ip_adapter(args, out_path, clip_output, torch):
    """IP-Adapter for SD1.5 (plain, 4 image tokens) in the safetensors layout."""
    import itertools

    from annotator.clipvision import config_clip_h
    from ldm.util import instantiate_from_config
    from omegaconf import OmegaConf
    from scripts.controlnet_model_guess import build_model_by_guess, controlnet_default_config
    from scripts.enums import ControlModelType, StableDiffusionVersion
    from scripts.ipadapter.image_proj_models import ImageProjModel
    from scripts.ipadapter.plugable_ipadapter import get_block
    from scripts.utils import load_state_dict

    # The cross-attention layers in the order the extension hooks them; the file's
    # key for hook n is "{2n+1}.to_k_ip.weight" (plugable_ipadapter.py).
    config = OmegaConf.load(os.path.join(args.webui, "configs", "v1-inference.yaml"))
    with torch.device("meta"):
        unet = instantiate_from_config(config.model.params.unet_config)
    names = {id(m): n for n, m in unet.named_modules()}
    ids = StableDiffusionVersion.SD1x.transformer_ids
    layers = []
    for tid in itertools.chain(ids.input_ids, ids.output_ids, ids.middle_ids):
        attn2 = get_block(unet, tid.block_type.value)[tid.block_id][1]
        attn2 = attn2.transformer_blocks[tid.block_index].attn2
        layers.append((names[id(attn2)], attn2.to_k.out_features, attn2.to_k.in_features))
    del unet
    context_dim = controlnet_default_config["context_dim"]
    if any(c_in != context_dim for _, _, c_in in layers):
        sys.exit("the UNet's cross-attention width is not the ControlNet default context_dim")

    torch.manual_seed(args.seed + 4)
    proj = ImageProjModel(
        cross_attention_dim=context_dim, clip_embeddings_dim=config_clip_h["projection_dim"]
    )
    sd = {"image_proj." + k: v.detach() for k, v in proj.state_dict().items()}
    for n, (_, width, _) in enumerate(layers):
        for kv in ("k", "v"):
            layer = torch.nn.Linear(context_dim, width, bias=False)
            sd[f"ip_adapter.{2 * n + 1}.to_{kv}_ip.weight"] = layer.weight.detach()
    copied = 0
    if args.cn_init == "unet":
        wanted = [f"{name}.to_{kv}.weight" for name, _, _ in layers for kv in ("k", "v")]
        src = unet_tensors(args, wanted)
        for n, (name, _, _) in enumerate(layers):
            for kv in ("k", "v"):
                sd[f"ip_adapter.{2 * n + 1}.to_{kv}_ip.weight"] = src[f"{name}.to_{kv}.weight"]
                copied += 1
    sd = {k: v.half().contiguous() for k, v in sd.items()}
    save_safetensors(sd, out_path, args, "ip-adapter sd15")

    # Load it the way the extension does, through IPAdapterModel.load.
    model = build_model_by_guess(load_state_dict(out_path), None, out_path)
    if model.type != ControlModelType.IPAdapter:
        sys.exit(f"the extension reads {out_path} as {model.type}")
    ipa = model.model.ipadapter
    if ipa.is_plus or ipa.is_sdxl:
        sys.exit(f"the extension reads {out_path} as plus={ipa.is_plus}, sdxl={ipa.is_sdxl}")
    if len(ipa.ip_layers.to_kvs) != 2 * len(layers):
        sys.exit(f"{len(ipa.ip_layers.to_kvs)} key/value layers, expected {2 * len(layers)}")
    if clip_output is None:
        clip_output = {"image_embeds": torch.randn(1, config_clip_h["projection_dim"])}
    emb = ipa.get_image_emb(clip_output)
    log(
        f"IP-Adapter: {out_path} ({len(sd)} tensors, {os.path.getsize(out_path) / 2**20:.0f} MiB, "
        f"{copied} key/value layers from the UNet); the extension reads it as "
        f"{ipa.clip_extra_context_tokens} tokens of {ipa.cross_attention_dim} from "
        f"{ipa.clip_embeddings_dim}-d image embeds, cond std {float(emb.cond_emb.std()):.3f}"
    )


def build_tile_controlnet(args, out_path, torch):
    """A tile ControlNet (SD1.5, 3 hint channels) from the extension's own class."""
    import copy

    from scripts.cldm import ControlNet
    from scripts.controlnet_model_guess import build_model_by_guess, controlnet_default_config
    from scripts.enums import ControlModelType
    from scripts.utils import load_state_dict

    config = copy.deepcopy(controlnet_default_config)
    config.update(hint_channels=3, use_fp16=False)
    torch.manual_seed(args.seed + 5)
    net = ControlNet(**config)
    net.eval()
    copied = 0
    if args.cn_init == "unet":
        own = net.state_dict()
        src = unet_tensors(args, list(own))
        with torch.no_grad():
            for k, v in src.items():
                if v.shape != own[k].shape:
                    sys.exit(f"{k}: {tuple(v.shape)} in the checkpoint, {tuple(own[k].shape)} here")
                own[k].copy_(v)
        copied = len(src)
        del src, own
    gen = torch.Generator().manual_seed(args.seed + 6)
    with torch.no_grad():
        refilled = refill_zeroed(net, args.zero_init_scale, torch)

        # Calibrate on a test input: 64x64 hint in [0, 1] (what tile_resample
        # passes), unit-variance latent, a text-like context.
        x = torch.randn((1, 4, 8, 8), generator=gen)
        hint = torch.rand((1, 3, 64, 64), generator=gen)
        t = torch.tensor([500.0])
        context = torch.randn((1, 77, config["context_dim"]), generator=gen)
        seen = {}

        def keep(name):
            def hook(module, inputs, output):
                # copies: the forward adds the hint to the first block's output in place
                seen[name] = (inputs[0].clone(), output.clone())

            return hook

        convs = [*net.zero_convs, net.middle_block_out]
        handles = [net.input_hint_block.register_forward_hook(keep("hint"))]
        handles.append(net.input_blocks[0].register_forward_hook(keep("first")))
        handles += [c.register_forward_hook(keep(i)) for i, c in enumerate(convs)]
        net(x, hint, t, context)
        last = net.input_hint_block[-1]
        f = rounded(float(seen["first"][1].std()) / float(seen["hint"][1].std()))
        last.weight.mul_(f)
        last.bias.mul_(f)
        net(x, hint, t, context)
        ratios = []
        for i, c in enumerate(convs):
            inp, out = seen[i]
            f = rounded(args.cn_control_scale * float(inp.std()) / float(out.std()))
            c[0].weight.mul_(f)
            c[0].bias.mul_(f)
        net(x, hint, t, context)
        for i in range(len(convs)):
            inp, out = seen[i]
            ratios.append(float(out.std()) / float(inp.std()))
        for h in handles:
            h.remove()
        log(
            f"tile ControlNet: hint features std {float(seen['hint'][1].std()):.3f} "
            f"(first block {float(seen['first'][1].std()):.3f}); control/feature std "
            f"{min(ratios):.3f}-{max(ratios):.3f}"
        )

    sd = {k: v.detach().half().contiguous() for k, v in net.state_dict().items()}
    del net
    save_safetensors(sd, out_path, args, "controlnet sd15 tile")

    model = build_model_by_guess(load_state_dict(out_path), None, out_path)
    if model.type != ControlModelType.ControlNet:
        sys.exit(f"the extension reads {out_path} as {model.type}")
    loaded = model.model.control_model.state_dict()
    if set(loaded) != set(sd):
        sys.exit(f"ControlNet keys differ from the class's: {sorted(set(loaded) ^ set(sd))[:5]}")
    bad = [k for k, v in sd.items() if not torch.equal(loaded[k].half(), v)]
    if bad:
        sys.exit(f"ControlNet tensors did not load unchanged: {bad[:5]}")
    log(
        f"tile ControlNet: {out_path} ({len(sd)} tensors, {copied} from the UNet, {refilled} "
        f"zero-initialised layers refilled, {os.path.getsize(out_path) / 2**20:.0f} MiB, "
        f"read as {model.type.name})"
    )


def build_controlnet_models(args, torch):
    import gc

    args.controlnet_dir = os.path.abspath(
        args.controlnet_dir or os.path.join(args.webui, "extensions", "sd-webui-controlnet")
    )
    cn_model_dir = args.cn_model_dir or os.path.join(args.webui, "models", "ControlNet")
    import_controlnet(args, torch)
    clip_output = None
    if not args.skip_clip_vision:
        clip_output = build_clip_vision(args, torch)
        gc.collect()
    if not args.skip_ip_adapter:
        build_ip_adapter(args, os.path.join(cn_model_dir, args.ip_adapter_name), clip_output, torch)
        gc.collect()
    if not args.skip_tile:
        build_tile_controlnet(args, os.path.join(cn_model_dir, args.tile_name), torch)
        gc.collect()


class Part:
    """Times one part of the run and its peak memory (the process's VmHWM, reset
    at the start of the part where Linux allows it), for the summary at the end."""

    done: ClassVar[list] = []

    def __init__(self, name):
        self.name = name

    @staticmethod
    def release():
        import ctypes
        import gc

        gc.collect()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass

    @staticmethod
    def peak_bytes():
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def __enter__(self):
        self.release()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
        except OSError:
            pass
        self.t0 = time.time()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            seconds, peak = time.time() - self.t0, self.peak_bytes()
            Part.done.append((self.name, seconds, peak))
            log(f"{self.name}: {seconds:.0f} s, peak memory {peak / 2**30:.2f} GiB")
        self.release()


def main(argv=None):
    args = parse_args(argv)
    args.webui = os.path.abspath(args.webui)
    if not os.path.isfile(os.path.join(args.webui, "configs", "v1-inference.yaml")):
        sys.exit(f"{args.webui} does not look like a WebUI install (no configs/v1-inference.yaml)")
    if args.sdxl_slim_depth < 1:
        sys.exit("--sdxl-slim-depth must be at least 1")
    extra_mms = parse_motion_modules(args.motion_modules)
    vae_approx = (args.sdxl_vae_approx or args.sdxl or args.sdxl_slim) and not args.skip_vae_approx
    hf_home = os.path.abspath(args.hf_home or os.path.join(args.webui, "hf_home"))
    # Must be set before transformers / huggingface_hub are imported.
    os.environ["HF_HOME"] = hf_home
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"

    t0 = time.time()
    if not args.skip_hf_cache:
        with Part("HF cache"):
            write_hf_cache(hf_home, args.bpe)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    add_paths(args.webui)

    if not args.skip_checkpoint or not args.skip_hf_cache or args.sdxl or args.sdxl_slim:
        check_tokenizer()
    if not args.skip_checkpoint:
        with Part("SD1.5 checkpoint"):
            build_checkpoint(
                args, os.path.join(args.webui, "models", "Stable-diffusion", args.ckpt_name), torch
            )
    ad_dir = args.animatediff_dir or os.path.join(args.webui, "extensions", "sd-webui-animatediff")
    mm_dir = args.mm_dir or os.path.join(ad_dir, "model")
    if not args.skip_motion_module:
        with Part("motion module mm_sd15_v2"):
            build_motion_module(args, os.path.join(mm_dir, args.mm_name), torch)
    for key, name in extra_mms:
        mm_type, _, seed_offset = EXTRA_MOTION_MODULES[key]
        with Part(f"motion module {key}"):
            build_motion_module(
                args,
                os.path.join(mm_dir, name),
                torch,
                mm_type=mm_type,
                seed_offset=seed_offset,
                kind=f"motion module {mm_type}",
            )
    sd_dir = os.path.join(args.webui, "models", "Stable-diffusion")
    if args.sdxl_slim:
        with Part("slim SDXL checkpoint"):
            build_sdxl(args, os.path.join(sd_dir, args.sdxl_slim_name), torch, slim=True)
    if args.sdxl:
        with Part("SDXL checkpoint"):
            build_sdxl(args, os.path.join(sd_dir, args.sdxl_name), torch, slim=False)
    if vae_approx:
        with Part("SDXL live-preview decoder"):
            build_vae_approx_sdxl(args, torch)
    if args.controlnet:
        with Part("ControlNet models"):
            build_controlnet_models(args, torch)
    for name, seconds, peak in Part.done:
        log(f"  {name:28s} {seconds:5.0f} s  peak {peak / 2**30:5.2f} GiB")
    log(
        f"done in {time.time() - t0:.0f} s. Launch with HF_HOME={hf_home} HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1"
    )


if __name__ == "__main__":
    main()
