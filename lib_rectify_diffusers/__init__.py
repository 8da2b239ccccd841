"""Noise rectification for diffusers video pipelines.

AnimateDiff, AnimateDiff-SDXL, ModelScope; the transformer ones in ``models.MODELS``
(Wan, HunyuanVideo, LTX-Video, Mochi, CogVideoX).

``image_to_video(pipe, image, params)`` animates a picture with a stock pipeline and
keeps it: the same method and settings (:class:`lib_rectify.RectifyParams`) as the
WebUI extension. Needs ``diffusers``; the core ``lib_rectify`` does not.
"""

from __future__ import annotations

from lib_rectify import RectifyError, RectifyParams

from .hook import SchedulerHook, hooked_scheduler
from .pipeline import PIPELINES, encode_picture, image_to_video, start_latents
from .schedulers import SCHEDULERS

__all__ = [
    "PIPELINES",
    "SCHEDULERS",
    "RectifyError",
    "RectifyParams",
    "SchedulerHook",
    "encode_picture",
    "hooked_scheduler",
    "image_to_video",
    "start_latents",
]
