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
    decoder output to std ~0.5, so images are neither flat nor clipped.

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


def build_motion_module(args, out_path, torch):
    ad_dir = args.animatediff_dir or os.path.join(args.webui, "extensions", "sd-webui-animatediff")
    if not os.path.isfile(os.path.join(ad_dir, "motion_module.py")):
        sys.exit(f"no motion_module.py in {ad_dir}: pass --animatediff-dir")
    sys.path.insert(0, ad_dir)
    from motion_module import MotionModuleType, MotionWrapper  # the extension's own classes

    torch.manual_seed(args.seed + 2)
    mm = MotionWrapper(
        mm_name=os.path.basename(out_path), mm_hash=None, mm_type=MotionModuleType.AnimateDiffV2
    )
    with torch.no_grad():
        n = refill_zeroed(mm, args.zero_init_scale, torch)
    sd = {k: v.detach().half().contiguous() for k, v in mm.state_dict().items()}
    guessed = MotionModuleType.get_mm_type(sd)
    if guessed != MotionModuleType.AnimateDiffV2:
        sys.exit(f"the extension would read this file as {guessed}, not AnimateDiffV2")
    check = MotionWrapper(mm_name="check", mm_hash=None, mm_type=guessed)
    check.load_state_dict(sd, strict=True)
    from safetensors.torch import save_file

    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    save_file(
        sd, out_path, metadata={"format": "pt", "random_weights": "true", "seed": str(args.seed)}
    )
    sort_safetensors_header(out_path)
    log(
        f"motion module: {out_path} ({len(sd)} tensors, {n} zero-initialised layers refilled, "
        f"{os.path.getsize(out_path) / 2**20:.0f} MiB, read as {guessed.name})"
    )


# ---------------------------------------------------------------- ControlNet


def import_controlnet(args, torch):
    """Make sd-webui-controlnet's own modules importable outside the WebUI.

    Its code imports modules.devices, modules.shared and modules.modelloader;
    these get small stand-ins (CPU, fp32, the install's config.json, no
    downloads).  Other WebUI modules (modules.safe) are the install's own.
    `scripts` is bound to the extension's scripts folder, which is a namespace
    package that repositories/generative-models/scripts would shadow.
    """
    import types

    cn_dir = args.controlnet_dir
    if not os.path.isfile(os.path.join(cn_dir, "scripts", "cldm.py")):
        sys.exit(
            f"no scripts/cldm.py in {cn_dir}: install sd-webui-controlnet or pass --controlnet-dir"
        )
    sys.path.insert(0, os.path.join(args.webui, "repositories", "generative-models"))
    sys.path.insert(0, cn_dir)  # for its `annotator` package

    def package(name, path):
        module = types.ModuleType(name)
        module.__path__ = [path]
        sys.modules[name] = module
        return module

    webui_modules = package("modules", os.path.join(args.webui, "modules"))
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
    )
    shared.data_path = args.webui
    modelloader = types.ModuleType("modules.modelloader")

    def load_file_from_url(url, *a, **k):
        raise RuntimeError(f"offline: sd-webui-controlnet wanted to download {url}")

    modelloader.load_file_from_url = load_file_from_url
    for name, module in (("devices", devices), ("shared", shared), ("modelloader", modelloader)):
        sys.modules["modules." + name] = module
        setattr(webui_modules, name, module)
    package("scripts", os.path.join(cn_dir, "scripts"))


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


def main(argv=None):
    args = parse_args(argv)
    args.webui = os.path.abspath(args.webui)
    if not os.path.isfile(os.path.join(args.webui, "configs", "v1-inference.yaml")):
        sys.exit(f"{args.webui} does not look like a WebUI install (no configs/v1-inference.yaml)")
    hf_home = os.path.abspath(args.hf_home or os.path.join(args.webui, "hf_home"))
    # Must be set before transformers / huggingface_hub are imported.
    os.environ["HF_HOME"] = hf_home
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"

    t0 = time.time()
    if not args.skip_hf_cache:
        write_hf_cache(hf_home, args.bpe)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    add_paths(args.webui)

    if not args.skip_checkpoint or not args.skip_hf_cache:
        check_tokenizer()
    if not args.skip_checkpoint:
        build_checkpoint(
            args, os.path.join(args.webui, "models", "Stable-diffusion", args.ckpt_name), torch
        )
    if not args.skip_motion_module:
        ad_dir = args.animatediff_dir or os.path.join(
            args.webui, "extensions", "sd-webui-animatediff"
        )
        mm_dir = args.mm_dir or os.path.join(ad_dir, "model")
        build_motion_module(args, os.path.join(mm_dir, args.mm_name), torch)
    if args.controlnet:
        build_controlnet_models(args, torch)
    log(
        f"done in {time.time() - t0:.0f} s. Launch with HF_HOME={hf_home} HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1"
    )


if __name__ == "__main__":
    main()
