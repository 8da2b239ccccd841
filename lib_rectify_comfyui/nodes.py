"""The ComfyUI nodes: settings in, a patched MODEL clone and the LATENT to sample out.

Classic node definitions (``INPUT_TYPES``, ``RETURN_TYPES``, ``FUNCTION``), which every
ComfyUI of the last years loads (ComfyUI v0.12.1: nodes.py, comfy_execution/validation.py);
``VALIDATE_INPUTS`` refuses bad widget values when the prompt is queued, before anything
runs, and the node's function checks the same values again for inputs fed by links.
Labels, hints and allowed values come from the core's single settings table
(``lib_rectify.params.FIELDS``), as on the WebUI's surfaces. Nothing here imports ComfyUI:
the node only calls methods of the objects it is given.
"""

from __future__ import annotations

from typing import Any

import torch

from lib_rectify import (
    DEFAULT_SIGMA_START,
    FIELDS_BY_NAME,
    OMEGA_PRESETS,
    RectifyError,
    RectifyParams,
    omega_weights,
    parse_omega_text,
    parse_percent,
    resolve_reference_frame,
)
from lib_rectify.anchors import DEFAULT_BLEND, anchor_positions, end_anchored_clean
from lib_rectify.params import MAX_REFERENCE_FRAME

from .patch import NodeError, Rectification, patch_model

CATEGORY = "animatediff/noise rectification"
APPLY_TITLE = "Noise Rectification (image to video)"
PREVIEW_TITLE = "Noise Rectification ω preview"
MAX_FRAMES = 4096


def _hint(name: str, extra: str = "") -> str:
    spec = FIELDS_BY_NAME[name]
    return f"{spec.hint} Allowed: {spec.allowed}.{extra}"


def settings_inputs() -> dict[str, tuple]:
    """The settings widgets, shared by both nodes."""
    return {
        "frames": (
            "INT",
            {
                "default": 16,
                "min": 1,
                "max": MAX_FRAMES,
                "tooltip": "Frames of the video: the picture is repeated this many times. Use the "
                "motion module's length (16 for SD1.5 v2/v3, 8 for HotShot-XL) or more with "
                "AnimateDiff-Evolved context options. Wan and other video models: the video's "
                "frames as their latent nodes count them (4k + 1, e.g. 33 or 81); ω and τ then "
                "act on the latent frames, (frames - 1) / 4 + 1 for Wan.",
            },
        ),
        "omega": (
            "STRING",
            {
                "default": "paper",
                "tooltip": _hint("omega"),
            },
        ),
        "tau_start_percent": (
            "FLOAT",
            {
                "default": 0.0,
                "min": 0.0,
                "max": 100.0,
                "step": 1.0,
                "tooltip": "Start of the window τ, in percent of the steps this sampling "
                "runs. " + _hint("tau"),
            },
        ),
        "tau_end_percent": (
            "FLOAT",
            {
                "default": 60.0,
                "min": 0.0,
                "max": 100.0,
                "step": 1.0,
                "tooltip": "End of the window τ, in percent of the steps this sampling runs "
                "(the paper: 60). 100 makes the reference frame exact.",
            },
        ),
        "reference_frame": (
            "INT",
            {
                "default": 0,
                "min": -MAX_REFERENCE_FRAME,
                "max": MAX_REFERENCE_FRAME - 1,
                "tooltip": _hint("reference_frame"),
            },
        ),
    }


def sigma_start_input() -> tuple:
    """The flow models' start σ: an optional widget, so saved workflows keep their values."""
    return (
        "FLOAT",
        {
            "default": DEFAULT_SIGMA_START,
            "min": 0.01,
            "max": 1.0,
            "step": 0.01,
            "tooltip": _hint(
                "sigma_start",
                " Applied when the schedule starts at σ = 1 (KSampler denoise 1.0); a "
                "later start (denoise below 1, KSamplerAdvanced start_at_step) is kept.",
            ),
        },
    )


def read_settings(
    *,
    frames: Any,
    omega: Any,
    tau_start_percent: Any,
    tau_end_percent: Any,
    reference_frame: Any,
    enabled: Any = True,
    end_picture: bool = False,
    sigma_start: Any = DEFAULT_SIGMA_START,
) -> RectifyParams:
    """The widgets' values as settings, or a :class:`RectifyError` naming the field."""
    if isinstance(frames, bool) or not isinstance(frames, int) or not 1 <= frames <= MAX_FRAMES:
        raise RectifyError("frames", frames, f"a whole number from 1 to {MAX_FRAMES}")
    start = parse_percent("tau_start_percent", tau_start_percent)
    end = parse_percent("tau_end_percent", tau_end_percent)
    if start > end:
        raise RectifyError(
            "tau_start_percent",
            tau_start_percent,
            f"at most tau_end_percent ({tau_end_percent}): the window starts before it ends",
        )
    params = RectifyParams(
        enabled=bool(enabled),
        omega=parse_omega_text(omega, field_name="omega"),
        tau=(start, end),
        reference_frame=reference_frame,
        sigma_start=sigma_start,
    )
    reference = resolve_reference_frame(params.reference_frame, frames)
    if end_picture and (frames < 2 or reference not in (0, frames - 1)):
        raise RectifyError(
            "reference_frame",
            reference_frame,
            "0 or -1 with an end picture: the end picture goes to the other end of the video",
        )
    return params


def _latent(value: Any, name: str) -> torch.Tensor:
    if not isinstance(value, dict) or not isinstance(value.get("samples"), torch.Tensor):
        raise RectifyError(name, type(value).__name__, "a LATENT (from VAE Encode)")
    samples = value["samples"]
    if samples.ndim == 5:
        raise RectifyError(
            name,
            tuple(samples.shape),
            "an image model's latent [1, C, h, w]; for a video model (Wan) connect image and "
            "vae instead: its VAE encodes time, so the node encodes the still video itself",
        )
    if samples.ndim != 4 or samples.shape[0] != 1:
        raise RectifyError(
            f"{name} batch",
            tuple(samples.shape),
            "one picture: a LATENT of batch 1 [1, C, h, w] (VAE Encode of one image)",
        )
    if not bool(torch.isfinite(samples).all()):
        raise RectifyError(name, "contains NaN or inf", "finite values (check the VAE)")
    return samples


def _latent_format(model: Any) -> Any:
    """The MODEL's latent format (comfy/latent_formats.py), or None when it has none."""
    try:
        return model.get_model_object("latent_format")
    except (AttributeError, KeyError):
        return None


def _fits_model(samples: torch.Tensor, model: Any, name: str) -> None:
    """Refuse a latent whose channels or dimensions are not the MODEL's."""
    fmt = _latent_format(model)
    if fmt is None:
        return
    channels = getattr(fmt, "latent_channels", None)
    dims = getattr(fmt, "latent_dimensions", 2)
    if dims == 3 and samples.ndim != 5:
        raise RectifyError(
            name,
            tuple(samples.shape),
            "a video model's latent [1, C, T, h, w]: connect image and vae instead, so the "
            "node encodes the picture as a still video with the model's VAE",
        )
    if dims != 3 and samples.ndim != 4:
        raise RectifyError(
            name, tuple(samples.shape), "an image model's latent [1, C, h, w] (VAE Encode)"
        )
    if isinstance(channels, int) and samples.shape[1] != channels:
        raise RectifyError(
            f"{name} channels",
            int(samples.shape[1]),
            f"{channels}, the MODEL's latent channels (use the VAE that belongs to the model)",
        )


def _image(value: Any, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.ndim != 4 or value.shape[-1] not in (3, 4):
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise RectifyError(name, got, "an IMAGE [1, H, W, 3] (Load Image)")
    if value.shape[0] != 1:
        raise RectifyError(
            f"{name} batch", int(value.shape[0]), "1: one picture (pick one with ImageFromBatch)"
        )
    if not bool(torch.isfinite(value).all()):
        raise RectifyError(name, "contains NaN or inf", "finite values")
    return value


def _encode(vae: Any, image: torch.Tensor, frames: int, name: str) -> torch.Tensor:
    """The picture's latent with ``vae``: ``[1, C, h, w]``, or for a video VAE (Wan's,
    causal in time: comfy/sd.py:995-1004) the latent ``[1, C, T, h, w]`` of the picture
    held still over ``frames`` frames."""
    if not callable(getattr(vae, "encode", None)):
        raise RectifyError("vae", type(vae).__name__, "a VAE (Load VAE, or a checkpoint's VAE)")
    video = getattr(vae, "latent_dim", 2) == 3
    pixels = image[..., :3]
    if video:
        pixels = pixels.expand(frames, *pixels.shape[1:])
    samples = vae.encode(pixels)
    if not isinstance(samples, torch.Tensor) or samples.ndim not in (4, 5):
        got = tuple(samples.shape) if isinstance(samples, torch.Tensor) else type(samples)
        raise RectifyError("vae output", got, "a latent [1, C, h, w] or [1, C, T, h, w]")
    if not bool(torch.isfinite(samples).all()):
        raise RectifyError(f"{name} latent", "contains NaN or inf", "finite values (check the VAE)")
    return samples[:1]


def clean_target(
    model: Any,
    params: RectifyParams,
    frames: int,
    *,
    picture: Any = None,
    image: Any = None,
    vae: Any = None,
    end_picture: Any = None,
    end_image: Any = None,
) -> tuple[torch.Tensor, tuple[int, int] | None]:
    """The clean video the sampler starts from and the anchors: ``[L, C, h, w]`` (the frames
    as the batch) from an image model's latent, ``[1, C, T, h, w]`` from a video VAE."""
    if picture is not None and image is not None:
        raise RectifyError(
            "picture", "connected with image", "either picture (a LATENT) or image + vae"
        )
    if picture is None and image is None:
        raise RectifyError(
            "picture",
            "not connected",
            "picture (VAE Encode of one image) or image + vae (needed for video models "
            "such as Wan, whose VAE encodes time)",
        )
    if image is not None:
        if vae is None:
            raise RectifyError("vae", "not connected", "the model's VAE, to encode image")
        if end_picture is not None:
            raise RectifyError(
                "end_picture", "a LATENT with image + vae", "the end picture as end_image"
            )
        latent = _encode(vae, _image(image, "image"), frames, "image")
        end = None
        if end_image is not None:
            end = _encode(vae, _image(end_image, "end_image"), frames, "end_image")
    else:
        if end_image is not None:
            raise RectifyError(
                "end_image", "an IMAGE with picture", "the end picture as end_picture (a LATENT)"
            )
        latent = _latent(picture, "picture")
        end = None if end_picture is None else _latent(end_picture, "end_picture")
    _fits_model(latent, model, "image" if image is not None else "picture")
    latent = latent.to(torch.float32)
    if end is not None:
        end = end.to(torch.float32)
    if latent.ndim == 5:  # one still video [1, C, T, h, w]
        steps = int(latent.shape[2])
        if end is None:
            return latent.clone(), None
        reference = resolve_reference_frame(params.reference_frame, steps)
        if steps < 2:
            raise RectifyError(
                "frames", frames, "enough frames for two latent frames with an end picture"
            )
        first, last = (latent, end) if reference == 0 else (end, latent)
        s = anchor_positions((0, steps - 1), steps).view(1, 1, steps, 1, 1)
        # Linear over the latent frames (DEFAULT_BLEND): frame 0 is the first still video's
        # first latent frame, the last frame the other's last, each as the VAE made it.
        return torch.lerp(first, last, s), (reference, steps - 1 - reference)
    if end is None:
        return latent.expand(frames, *latent.shape[1:]).clone(), None
    rows, anchors = end_anchored_clean(latent, end, frames, params.reference_frame, DEFAULT_BLEND)
    return rows[0], anchors


def _node_name(unique_id: Any) -> str:
    return f"{APPLY_TITLE} (node {unique_id})" if unique_id is not None else APPLY_TITLE


class NoiseRectification:
    """Animate one picture with AnimateDiff and keep it: the paper's noise rectification."""

    DESCRIPTION = (
        "Image to video that keeps the picture (Li et al., tuning-free noise rectification). "
        "Put it after the AnimateDiff-Evolved loader (SD1.5, SDXL), or after ModelSamplingSD3 "
        "for Wan and other flow-matching video models; connect the picture (its LATENT from "
        "VAE Encode, or image + vae, which video models need), and sample its LATENT output "
        "with denoise 1.0: during the window τ the predicted noise of every frame is pulled "
        "back toward the noise the sampler added, weighted per frame by ω; the reference "
        "frame becomes exactly the picture. Flow models start from the picture noised to "
        "sigma_start instead of pure noise. Optional end picture: the video also ends on it."
    )
    CATEGORY = CATEGORY
    FUNCTION = "apply"
    RETURN_TYPES = ("MODEL", "LATENT")
    RETURN_NAMES = ("model", "latent")
    OUTPUT_TOOLTIPS = (
        "A clone of the MODEL that rectifies every sampling of the LATENT below (the input "
        "MODEL is not changed).",
        "The picture repeated over the frames (blended toward the end picture when one is "
        "connected): sample from it at denoise 1.0.",
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "model": (
                    "MODEL",
                    {
                        "tooltip": "The model with AnimateDiff applied, or a video model such "
                        "as Wan 2.1 / 2.2 (after ModelSamplingSD3)."
                    },
                ),
                **settings_inputs(),
                "enabled": (
                    "BOOLEAN",
                    {
                        "default": True,
                        "tooltip": "Off: the MODEL passes through unchanged (the LATENT is "
                        "still the repeated picture).",
                    },
                ),
            },
            "optional": {
                "picture": (
                    "LATENT",
                    {
                        "tooltip": "The picture to animate: VAE Encode of one image, at the "
                        "video's size (SD1.5, SDXL). Or connect image + vae instead."
                    },
                ),
                "end_picture": (
                    "LATENT",
                    {
                        "tooltip": _hint("end_anchor").replace(
                            "When the host has an end picture, hold", "Hold"
                        )
                        + " Same size as the picture; the reference frame must be 0 or -1.",
                    },
                ),
                "image": (
                    "IMAGE",
                    {
                        "tooltip": "The picture to animate, as an IMAGE (Load Image), at the "
                        "video's size; with vae. Needed for video models (Wan): their VAE "
                        "encodes time, so the node encodes the picture held still over the "
                        "frames. Use it instead of picture."
                    },
                ),
                "vae": ("VAE", {"tooltip": "The model's VAE, to encode image (and end_image)."}),
                "end_image": (
                    "IMAGE",
                    {
                        "tooltip": "The end picture as an IMAGE, with image + vae: the video "
                        "also ends on it. Same size as image; the reference frame must be 0 "
                        "or -1."
                    },
                ),
                "sigma_start": sigma_start_input(),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    @classmethod
    def VALIDATE_INPUTS(
        cls,
        frames: Any = None,
        omega: Any = None,
        tau_start_percent: Any = None,
        tau_end_percent: Any = None,
        reference_frame: Any = None,
        sigma_start: Any = None,
    ) -> bool | str:
        """The settings widgets, checked when the prompt is queued (comfy_execution: an
        error string fails the prompt with HTTP 400 and marks the node). ComfyUI passes only
        the inputs named here, and None for one fed by a link, checked when the node runs."""
        if sigma_start is not None:
            try:
                RectifyParams(sigma_start=sigma_start)
            except RectifyError as error:
                return str(error)
        values = {
            "frames": frames,
            "omega": omega,
            "tau_start_percent": tau_start_percent,
            "tau_end_percent": tau_end_percent,
            "reference_frame": reference_frame,
        }
        given = {k: v for k, v in values.items() if v is not None}
        try:
            if len(given) == len(values):
                read_settings(**given)
            else:
                if "omega" in given:
                    parse_omega_text(given["omega"], field_name="omega")
                for name in ("tau_start_percent", "tau_end_percent"):
                    if name in given:
                        parse_percent(name, given[name])
        except RectifyError as error:
            return str(error)
        return True

    def apply(
        self,
        model: Any,
        picture: Any = None,
        frames: int = 16,
        omega: str = "paper",
        tau_start_percent: float = 0.0,
        tau_end_percent: float = 60.0,
        reference_frame: int = 0,
        enabled: bool = True,
        end_picture: Any = None,
        unique_id: Any = None,
        image: Any = None,
        vae: Any = None,
        end_image: Any = None,
        sigma_start: float = DEFAULT_SIGMA_START,
    ) -> tuple[Any, dict]:
        node = _node_name(unique_id)
        try:
            params = read_settings(
                frames=frames,
                omega=omega,
                tau_start_percent=tau_start_percent,
                tau_end_percent=tau_end_percent,
                reference_frame=reference_frame,
                enabled=enabled,
                end_picture=end_picture is not None or end_image is not None,
                sigma_start=sigma_start,
            )
            clean, anchors = clean_target(
                model,
                params,
                frames,
                picture=picture,
                image=image,
                vae=vae,
                end_picture=end_picture,
                end_image=end_image,
            )
        except RectifyError as error:
            raise NodeError(f"{node}: {str(error).removeprefix('Noise Rectification: ')}") from None
        if picture is not None:
            clean = clean.to(picture["samples"].dtype)
        out_latent = {"samples": clean}
        if not params.active:
            return (model, out_latent)
        rectification = Rectification(params, clean, anchors=anchors, node=node)
        return (patch_model(model, rectification), out_latent)


class NoiseRectificationPreview:
    """ω per frame as a picture, so the trade-off is seen rather than read."""

    DESCRIPTION = (
        "Draws ω for each frame: low bars stay close to the picture, high bars move more. "
        "The reference frame (and the end frame with an end picture) is marked: it is "
        "exactly the picture."
    )
    CATEGORY = CATEGORY
    FUNCTION = "preview"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("omega_curve",)
    OUTPUT_TOOLTIPS = ("ω per frame as an image; connect it to Preview Image.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                **settings_inputs(),
                "end_picture": (
                    "BOOLEAN",
                    {"default": False, "tooltip": "Draw it as with an end picture (two anchors)."},
                ),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(
        cls,
        frames: Any = None,
        omega: Any = None,
        tau_start_percent: Any = None,
        tau_end_percent: Any = None,
        reference_frame: Any = None,
    ) -> bool | str:
        return NoiseRectification.VALIDATE_INPUTS(
            frames, omega, tau_start_percent, tau_end_percent, reference_frame
        )

    def preview(
        self,
        frames: int,
        omega: str,
        tau_start_percent: float,
        tau_end_percent: float,
        reference_frame: int,
        end_picture: bool = False,
    ) -> tuple[torch.Tensor]:
        try:
            params = read_settings(
                frames=frames,
                omega=omega,
                tau_start_percent=tau_start_percent,
                tau_end_percent=tau_end_percent,
                reference_frame=reference_frame,
                end_picture=end_picture,
            )
        except RectifyError as error:
            raise NodeError(
                f"{PREVIEW_TITLE}: {str(error).removeprefix('Noise Rectification: ')}"
            ) from None
        reference = resolve_reference_frame(params.reference_frame, frames)
        anchors = (reference,)
        if end_picture:
            anchors = (reference, frames - 1 - reference)
        weights = omega_weights(params.omega, frames, params.reference_frame, anchors)
        return (omega_picture(weights, anchors),)


def omega_picture(
    weights: torch.Tensor, anchors: tuple[int, ...], height: int = 128
) -> torch.Tensor:
    """Bars of ω on a dark background, anchors in orange: ``[1, H, W, 3]`` in [0, 1]."""
    frames = weights.numel()
    slot = max(4, min(32, 512 // max(frames, 1)))
    width = frames * slot
    image = torch.full((height, width, 3), 0.12)
    image[-1, :, :] = 0.6  # baseline
    for i, w in enumerate(weights.tolist()):
        bar = max(1, round(float(w) * (height - 8)))
        color = torch.tensor([1.0, 0.55, 0.1]) if i in anchors else torch.tensor([0.35, 0.65, 1.0])
        left, right = i * slot + 1, (i + 1) * slot - 1
        if i in anchors:
            bar = max(bar, 3)
        image[height - 1 - bar : height - 1, left:right, :] = color
    return image[None]


NODE_CLASS_MAPPINGS = {
    "NoiseRectification": NoiseRectification,
    "NoiseRectificationPreview": NoiseRectificationPreview,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "NoiseRectification": APPLY_TITLE,
    "NoiseRectificationPreview": PREVIEW_TITLE,
}
__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "OMEGA_PRESETS"]
