"""Checked by the WebUI at start-up: install only what is missing, never upgrade torch.

The WebUI already provides torch, numpy, gradio and safetensors; einops ships with it
too (k-diffusion needs it). This only covers an unusual install without einops.

ComfyUI-Manager also runs an install.py of every node pack it installs, with ComfyUI's
Python and no WebUI (manager_core.py execute_install_script): there it does nothing, as
ComfyUI has everything the nodes need.
"""

try:
    import launch
except ImportError:  # not the WebUI: ComfyUI-Manager
    launch = None

if launch is not None and not launch.is_installed("einops"):
    launch.run_pip("install einops", "einops for sd-webui-noise-rectification")
