"""Test-only ComfyUI nodes for the live test host (tests/comfyui/live/tools/SETUP.md, "Wan 2.1").

Never part of the product: this folder lives under ``tests/`` (``.comfyignore`` keeps it out
of the Comfy Registry archive, and the pack's root ``__init__.py`` imports only
``lib_rectify_comfyui``). The guide links it into ``ComfyUI/custom_nodes/nr_test_nodes``;
ComfyUI then imports this file as a node pack (nodes.py:2196-2252, ComfyUI 3be0175) and
reads ``NODE_CLASS_MAPPINGS``. torch and ComfyUI are imported inside the functions only, so
that this file imports anywhere (pytest, a plain Python).

* ``NRTestWanConditioning`` (seed, length, tokens, width) -> (positive, negative): Wan's
  text conditioning without its 5.7 B-parameter umt5-xxl encoder. A real one is
  ``[1, 512, 4096]``: the tokenizer pads to 512 (min_length, comfy/text_encoders/wan.py:14)
  and the encoder zeroes the positions after the prompt's tokens (zero_out_masked,
  comfy/text_encoders/wan.py:9, comfy/sd1_clip.py:279-280). Here the first ``tokens``
  positions are N(0, 1) draws from ``torch.Generator().manual_seed(seed)`` (positive first,
  then negative), the rest zero: the same seed gives the same tensors, bit for bit.
* ``NRTestModelInfo`` (model) -> shown text: what ComfyUI made of a MODEL, as JSON in the
  prompt's ``/history`` outputs (``{"text": ["{...}"]}``): the detected configuration class
  (comfy/supported_models.py), the model class (comfy/model_base.py), the model type, the
  latent format, the sampling classes and their shift / multiplier / sigma range (after any
  ModelSamplingSD3 patch), and the DiT's sizes.
"""

from __future__ import annotations

import json

CATEGORY = "_for_testing/noise_rectification"


class NRTestWanConditioning:
    """Deterministic random CONDITIONING of umt5-xxl's shape (test host only)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF}),
                "length": ("INT", {"default": 512, "min": 1, "max": 4096}),
                "tokens": ("INT", {"default": 16, "min": 0, "max": 4096}),
                "width": ("INT", {"default": 4096, "min": 1, "max": 8192}),
            }
        }

    RETURN_TYPES = ("CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("positive", "negative")
    FUNCTION = "make"
    CATEGORY = CATEGORY
    DESCRIPTION = (
        "Test host only: random [1, length, width] text conditioning, the first `tokens` "
        "positions N(0, 1), the rest zero, as umt5-xxl gives for Wan; same seed, same tensors."
    )

    def make(self, seed: int, length: int, tokens: int, width: int):
        import torch

        generator = torch.Generator().manual_seed(seed)
        used = min(tokens, length)
        out = []
        for _ in ("positive", "negative"):
            context = torch.zeros((1, length, width), dtype=torch.float32)
            context[:, :used] = torch.randn((1, used, width), generator=generator)
            out.append([[context, {}]])
        return tuple(out)


class NRTestModelInfo:
    """What ComfyUI detected for a MODEL, as JSON text in /history (test host only)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",)}}

    RETURN_TYPES = ()
    FUNCTION = "report"
    OUTPUT_NODE = True
    CATEGORY = CATEGORY
    DESCRIPTION = "Test host only: the detected model configuration and sampling, as JSON."

    def report(self, model):
        base = model.model
        sampling = model.get_model_object("model_sampling")
        config = base.model_config
        dit = base.diffusion_model
        info = {
            "model_config": type(config).__name__,
            "model": type(base).__name__,
            "model_type": base.model_type.name,
            "latent_format": type(base.latent_format).__name__,
            "latent_channels": base.latent_format.latent_channels,
            "latent_dimensions": getattr(base.latent_format, "latent_dimensions", 2),
            "diffusion_model": f"{type(dit).__module__}.{type(dit).__name__}",
            "unet_config": {
                k: list(v) if isinstance(v, tuple) else v
                for k, v in config.unet_config.items()
                if isinstance(v, (bool, int, float, str, tuple, list, type(None)))
            },
            "sampling_settings": dict(getattr(config, "sampling_settings", {})),
            "model_sampling": [  # the classes ComfyUI composed it of (not torch's, object)
                c.__name__
                for c in type(sampling).__mro__
                if c is not object and not c.__module__.startswith("torch")
            ],
            "shift": float(getattr(sampling, "shift", float("nan"))),
            "multiplier": float(getattr(sampling, "multiplier", float("nan"))),
            "sigma_min": float(sampling.sigma_min),
            "sigma_max": float(sampling.sigma_max),
            "parameters": sum(p.numel() for p in dit.parameters()),
        }
        return {"ui": {"text": [json.dumps(info, sort_keys=True)]}}


NODE_CLASS_MAPPINGS = {
    "NRTestWanConditioning": NRTestWanConditioning,
    "NRTestModelInfo": NRTestModelInfo,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "NRTestWanConditioning": "NR test: Wan conditioning (random, test host only)",
    "NRTestModelInfo": "NR test: model info (test host only)",
}
