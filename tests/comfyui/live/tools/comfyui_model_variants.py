#!/usr/bin/env python3
"""Derive ComfyUI-loadable variants of two random models written by
tests/live/tools/make_random_models.py (which writes them for the WebUI).

  vega         The slim SDXL (one transformer layer in every attention block, depth
               [0,0,1,1,1,1]) matches none of ComfyUI's model configs, so
               CheckpointLoaderSimple fails with "Could not detect model type".
               This copies transformer block 0 of input_blocks.7 and .8 as block 1,
               giving depth [0,0,1,1,2,2]: the Segmind-Vega layout, which ComfyUI
               detects as an SDXL-family model (supported_models.Segmind_Vega, a
               subclass of SDXL). Every width, block and conditioning stays SDXL's.
  hsxl-native  The HotShot-XL motion module is written in the AnimateDiff key layout
               (what sd-webui-animatediff reads). AnimateDiff-Evolved recognises
               HotShot-XL only by HotShot's own key names, and reads the AnimateDiff
               layout as "AnimateDiff SDXL v1" (wrong beta schedule on autoselect).
               This renames motion_modules.N.temporal_transformer. ->
               temporal_attentions.N. and pos_encoder.pe -> pos_encoder.positional_encoding.
  clip-vision  The CLIP ViT-H image encoder written for sd-webui-controlnet (clip_h.pth,
               a torch pickle with transformers CLIPVisionModelWithProjection keys) as
               safetensors, tensors unchanged (fp16). ComfyUI reads those keys as they
               are; IPAdapter_plus's unified loader finds the encoder only by a name like
               CLIP-ViT-H-14-laion2B-s32B-b79K.(bin|safetensors).

Usage (with any Python that has torch and safetensors, e.g. the ComfyUI venv):
  python comfyui_model_variants.py vega SRC.safetensors DST.safetensors
  python comfyui_model_variants.py hsxl-native SRC.safetensors DST.safetensors
  python comfyui_model_variants.py clip-vision SRC.pth DST.safetensors

Deterministic: the same input gives the same output bytes. Peak memory about twice
the file size (vega: about 6.5 GB for the 2.9 GB slim SDXL).
"""

import argparse
import re


def vega(sd):
    if any("input_blocks.7.1.transformer_blocks.1." in k for k in sd):
        raise SystemExit("input_blocks.7 already has two transformer blocks: nothing to do")
    out = dict(sd)
    added = 0
    for k, v in sd.items():
        for blk in ("input_blocks.7.1.", "input_blocks.8.1."):
            tag = "model.diffusion_model." + blk + "transformer_blocks.0."
            if k.startswith(tag):
                out[k.replace("transformer_blocks.0.", "transformer_blocks.1.", 1)] = v.clone()
                added += 1
    if added == 0:
        raise SystemExit("no input_blocks.7/8 transformer blocks found: not an SDXL checkpoint?")
    return out, f"added {added} tensors (input_blocks.7/8 transformer depth 1 -> 2)"


def hsxl_native(sd):
    out = {}
    for k, v in sd.items():
        k2 = re.sub(
            r"motion_modules\.(\d+)\.temporal_transformer\.", r"temporal_attentions.\1.", k, count=1
        )
        out[k2.replace("pos_encoder.pe", "pos_encoder.positional_encoding")] = v
    if not any(k.endswith("pos_encoder.positional_encoding") for k in out):
        raise SystemExit("no pos_encoder.pe keys: not an AnimateDiff-layout motion module?")
    return out, f"renamed {len(out)} tensors to HotShot-XL key names"


def clip_vision(sd):
    if "vision_model.encoder.layers.0.layer_norm1.weight" not in sd:
        raise SystemExit("no vision_model.encoder keys: not a transformers CLIP image encoder?")
    if "visual_projection.weight" not in sd:
        raise SystemExit("no visual_projection.weight: IP-Adapter needs the projected embeds")
    return {k: v.contiguous() for k, v in sd.items()}, f"wrote {len(sd)} tensors unchanged"


def main():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("kind", choices=["vega", "hsxl-native", "clip-vision"])
    p.add_argument("src")
    p.add_argument("dst")
    a = p.parse_args()
    from safetensors.torch import load_file, save_file

    if a.src.endswith(".safetensors"):
        sd = load_file(a.src)
    else:
        import torch

        sd = torch.load(a.src, map_location="cpu", weights_only=True)
    out, msg = {"vega": vega, "hsxl-native": hsxl_native, "clip-vision": clip_vision}[a.kind](sd)
    save_file({k: out[k] for k in sorted(out)}, a.dst, metadata={"format": "pt"})
    print(f"{a.dst}: {msg}")


if __name__ == "__main__":
    main()
