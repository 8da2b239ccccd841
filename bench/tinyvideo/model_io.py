"""Save and load the tiny model: fp16 safetensors weights plus the JSON config that made them."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .unet import TinyVideoUNet, UNetConfig

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "tinyvideo16.safetensors"


def config_path(weights: Path) -> Path:
    return weights.with_suffix(".json")


def save_model(model: TinyVideoUNet, weights: Path, record: dict) -> None:
    """Write fp16 weights (keeps the committed file small) and `record` (+ architecture)."""
    weights.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(weights), metadata={"format": "pt"})
    record = {**record, "unet": model.config.to_dict()}
    config_path(weights).write_text(json.dumps(record, indent=2) + "\n")


def load_model(weights: Path | str | None = None) -> tuple[TinyVideoUNet, dict]:
    """Load the shipped (or given) model in fp32 eval mode, with its config record."""
    weights = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    if not weights.exists():
        raise FileNotFoundError(
            f"{weights} not found; train it with `python -m bench.tinyvideo.train`"
        )
    record = json.loads(config_path(weights).read_text())
    model = TinyVideoUNet(UNetConfig.from_dict(record["unet"]))
    state = {k: v.float() for k, v in load_file(str(weights)).items()}
    model.load_state_dict(state)
    model.eval().requires_grad_(False)
    return model, record
