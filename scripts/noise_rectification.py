"""WebUI entry point: thin glue between the host's hooks and ``lib_rectify``.

Checked against AUTOMATIC1111 stable-diffusion-webui v1.10.1 (82a973c) and
sd-webui-animatediff a88e889. The logic lives in ``lib_rectify_webui`` (host side)
and ``lib_rectify`` (the method, host-independent).
"""

from __future__ import annotations

from typing import Any

from modules import errors, script_callbacks, scripts, sd_samplers_common, shared
from modules.processing import StableDiffusionProcessingImg2Img

from lib_rectify import RectifyError
from lib_rectify_webui import animatediff, args, infotext, job, ui, xyz

_animatediff_components: dict[str, dict[str, Any]] = {"img2img": {}, "txt2img": {}}
_xyz_options: list[Any] = []


def _log(message: str) -> None:
    print(f"[Noise Rectification] {message}")


class NoiseRectificationScript(scripts.Script):
    def title(self) -> str:
        return ui.TITLE

    def show(self, is_img2img: bool) -> Any:
        return scripts.AlwaysVisible

    def ui(self, is_img2img: bool) -> list[Any]:
        tab = "img2img" if is_img2img else "txt2img"
        return ui.build(self, is_img2img, _animatediff_components[tab])

    def setup(self, p: Any, *args: Any) -> None:
        # Runs for every script before any before_process (modules/processing.py:278-294).
        animatediff.remember_setup_state(p)

    def before_process(self, p: Any, *args: Any) -> None:
        # Runs after AnimateDiff's before_process (folder-name order), which has set
        # p.batch_size to the frame count and, for the API, parsed its own dict.
        job.clear(p)
        infotext.forget_inherited(p)
        try:
            self._prepare(p, args)
        except Exception as error:  # the host would only log it: fail the job instead
            if not isinstance(error, RectifyError):
                error = job.internal_error("before_process", error)
            _log(str(error))
            job.fail_job(p, error)

    def _prepare(self, p: Any, args: tuple) -> None:
        params = job.parse_job_params(p, args)
        if not params.enabled:
            return
        reason = self._not_applicable(p)
        if reason:
            message = f"enabled but not applied: {reason}; the result is generated without it."
            _log(message)
            infotext.comment(p, message)
            infotext.write(p, {infotext.SKIPPED_KEY: reason})
            return
        refusal = self._refusal(p)
        if refusal is not None:
            raise refusal
        end_picture, end_source = self._end_picture(p, params, args)
        if not animatediff.setup_completed(p):
            self._note_incomplete_animatediff(p)
        infotext.write(p, params.to_infotext())
        if params.active:
            job.start(p, params, end_picture, end_source)
            if end_picture is None:
                infotext.write(p, {infotext.INIT_KEY: infotext.INIT_NOTE})
            else:
                infotext.write(
                    p, {infotext.INIT_KEY: infotext.INIT_NOTE_TWO, infotext.END_KEY: end_source}
                )

    @staticmethod
    def _end_picture(p: Any, params: Any, script_args: tuple) -> tuple[Any, str]:
        """The end anchor's picture and where it came from (docs/two-anchors.md).

        AnimateDiff's own last frame is honoured as the end anchor; this extension's end
        picture serves where AnimateDiff's is not set. Both at once are refused.
        """
        ad_last = animatediff.arg(animatediff.args_of(p), "last_frame", None)
        ours = args.end_picture_from_script_args(script_args)
        if ad_last is not None and ours is not None:
            raise RectifyError(
                "end picture",
                "two",
                "one end picture: AnimateDiff's last frame or this extension's end picture, "
                "not both",
            )
        if ad_last is not None and not params.end_anchor:
            raise RectifyError(
                "end_anchor",
                False,
                "true to end on AnimateDiff's last frame (rectification would otherwise pin "
                "the whole video to the first picture), or remove AnimateDiff's last frame",
            )
        if not params.end_anchor or (ad_last is None and ours is None):
            return None, ""
        if ad_last is not None:
            return ad_last, job.END_FROM_ANIMATEDIFF
        return ours, job.END_FROM_OURS

    def process_before_every_sampling(self, p: Any, *args: Any, **kwargs: Any) -> None:
        if "x" in kwargs:
            job.before_sampling(p, kwargs["x"], shared, sd_samplers_common, _encode_picture)

    def postprocess(self, p: Any, processed: Any, *args: Any) -> None:
        job.finish(p)

    # ------------------------------------------------------------------ checks
    @staticmethod
    def _not_applicable(p: Any) -> str | None:
        if not isinstance(p, StableDiffusionProcessingImg2Img):
            return "it works in img2img (this is txt2img)"
        ad = animatediff.args_of(p)
        if ad is None:
            return "sd-webui-animatediff is not installed"
        if not animatediff.arg(ad, "enable", False):
            return "AnimateDiff is not enabled"
        return None

    @staticmethod
    def _note_incomplete_animatediff(p: Any) -> None:
        """AnimateDiff stopped half-way through its before_process (animatediff.py: a known
        a88e889 bug with ControlNet units). Its motion module samples the video as usual
        unless the video needs its context windows: refuse that, say the rest."""
        ad = animatediff.args_of(p)
        frames = int(animatediff.arg(ad, "video_length", 0) or 0)
        context = int(animatediff.arg(ad, "batch_size", 0) or 0)
        cause = (
            "AnimateDiff did not finish setting up this job (sd-webui-animatediff a88e889 "
            "stops half-way on ControlNet units: always over the API, and in the UI when "
            "an enabled unit has no image of its own)"
        )
        if frames > context:
            raise RectifyError(
                "AnimateDiff setup",
                "incomplete",
                f"{cause}, so its context windows are off and {frames} frames with a "
                f"context of {context} would not be AnimateDiff's video: set the context "
                f"size (batch_size) to {frames}; see the README, 'With IP-Adapter and "
                "ControlNet'",
            )
        message = (
            f"{cause}: the frames are sampled with its motion module as usual, but its "
            "prompt travel, its infotext and its output files are missing; its motion "
            "module is taken out of the UNet after the job."
        )
        _log(message)
        infotext.comment(p, message)
        infotext.write(p, {infotext.ANIMATEDIFF_KEY: "setup incomplete (ControlNet units)"})
        job.restore_animatediff_on_close(p)

    @staticmethod
    def _refusal(p: Any) -> RectifyError | None:
        ad = animatediff.args_of(p)
        if animatediff.arg(ad, "freeinit_enable", False):
            return RectifyError(
                "AnimateDiff FreeInit",
                True,
                "turn FreeInit off to use noise rectification (they both rewrite the sampling)",
            )
        if (
            animatediff.arg(ad, "is_i2i_batch", False)
            or len(getattr(p, "init_images", None) or []) > 1
        ):
            count = len(getattr(p, "init_images", None) or [])
            return RectifyError(
                "init images",
                count,
                "one picture to animate (AnimateDiff's img2img batch is not supported)",
            )
        refiner = getattr(p, "refiner_checkpoint", None)
        switch_at = getattr(p, "refiner_switch_at", None)
        if refiner not in (None, "", "None", "none") and (switch_at is None or switch_at < 1):
            # modules/sd_samplers_common.py:158-202 reloads the weights mid-sampling; the
            # refiner has no motion module and its own noise schedule.
            return RectifyError(
                "refiner",
                refiner,
                "no refiner with AnimateDiff and noise rectification: the refiner has no "
                "motion module, so the frames would stop being a video after the switch",
            )
        return None


def _encode_picture(p: Any, picture: Any) -> Any:
    """An end picture's latent ``[1, C, h, w]``, made as the WebUI makes the init image's
    (modules/processing.py:1677-1734, v1.10.1: flatten, resize with the job's resize
    mode, the VAE encode method of the settings) and as AnimateDiff encodes its last
    frame (scripts/animatediff_latent.py). Base64 text is decoded as AnimateDiff does."""
    import numpy as np
    import torch
    from modules import devices, images
    from modules.sd_samplers_common import approximation_indexes, images_tensor_to_samples

    if isinstance(picture, str):
        from modules.api.api import decode_base64_to_image

        try:
            picture = decode_base64_to_image(picture)
        except Exception as error:  # the API's own decoder raises HTTPException
            raise RectifyError(
                "end_picture", picture[:40] + "…", "a base64-encoded image"
            ) from error
    if not hasattr(picture, "convert"):
        raise RectifyError("end_picture", type(picture).__name__, "an image")
    image = images.flatten(picture, shared.opts.img2img_background_color)
    if p.resize_mode != 3:
        image = images.resize_image(p.resize_mode, image, p.width, p.height)
    array = np.moveaxis(np.array(image).astype(np.float32) / 255.0, 2, 0)[None]
    tensor = torch.from_numpy(array).to(shared.device, dtype=devices.dtype_vae)
    latent = images_tensor_to_samples(
        tensor, approximation_indexes.get(shared.opts.sd_vae_encode_method), p.sd_model
    )
    if p.resize_mode == 3:
        latent = torch.nn.functional.interpolate(
            latent, size=(p.height // 8, p.width // 8), mode="bilinear"
        )
    return latent


# ------------------------------------------------------------------ registration (once)
def _on_after_component(component: Any, **_kwargs: Any) -> None:
    elem_id = getattr(component, "elem_id", None) or ""
    for tab in ("img2img", "txt2img"):
        for name in ("video-length", "batch-size"):
            if elem_id == f"{tab}-ad-{name}":
                _animatediff_components[tab][name.replace("-", "_")] = component
    # AnimateDiff's last-frame image has no elem_id; it exists only in its img2img
    # "I2V Traditional" accordion (scripts/animatediff_ui.py:462-498, a88e889).
    if str(getattr(component, "label", "") or "").startswith("Optional last frame"):
        _animatediff_components["img2img"]["last_frame"] = component


def _register_xyz_axes(*_args: Any) -> None:
    if _xyz_options:
        return
    for data in scripts.scripts_data:
        if getattr(data.script_class, "__module__", "") in ("xyz_grid.py", "xyz_grid"):
            try:
                _xyz_options.extend(xyz.register(data.module))
            except Exception:  # the XYZ script changed shape: keep the WebUI running
                errors.report("Noise Rectification: could not add XYZ axes", exc_info=True)
            return


def _on_script_unloaded() -> None:
    for data in scripts.scripts_data:
        if getattr(data.script_class, "__module__", "") in ("xyz_grid.py", "xyz_grid"):
            xyz.unregister(data.module, _xyz_options)
    _xyz_options.clear()


script_callbacks.on_after_component(_on_after_component, name="noise_rectification_components")
script_callbacks.on_cfg_denoiser(job.on_cfg_denoiser, name="noise_rectification_capture")
script_callbacks.on_cfg_after_cfg(job.on_cfg_after_cfg, name="noise_rectification_rectify")
script_callbacks.on_before_ui(_register_xyz_axes, name="noise_rectification_xyz")
script_callbacks.on_script_unloaded(_on_script_unloaded, name="noise_rectification_unload")
_register_xyz_axes()  # API-only servers (--nowebui) never build the UI
