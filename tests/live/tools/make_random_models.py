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
--skip-hf-cache) and rename the outputs.  The same seed gives the same
weights on the same torch version.  Takes 1-2 minutes on two CPU cores and
peaks near 9 GB of memory; the checkpoint is about 2 GB.
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
    log(
        f"motion module: {out_path} ({len(sd)} tensors, {n} zero-initialised layers refilled, "
        f"{os.path.getsize(out_path) / 2**20:.0f} MiB, read as {guessed.name})"
    )


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
    log(
        f"done in {time.time() - t0:.0f} s. Launch with HF_HOME={hf_home} HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1"
    )


if __name__ == "__main__":
    main()
