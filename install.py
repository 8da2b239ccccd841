"""Checked by the WebUI at start-up: install only what is missing, never upgrade torch.

The WebUI already provides torch, numpy, gradio and safetensors; einops ships with it
too (k-diffusion needs it). This only covers an unusual install without einops.
"""

import launch

if not launch.is_installed("einops"):
    launch.run_pip("install einops", "einops for sd-webui-noise-rectification")
