"""A fake of the host interfaces the glue touches, installed into ``sys.modules``.

Every name mirrors AUTOMATIC1111 stable-diffusion-webui v1.10.1 (commit 82a973c) and
sd-webui-animatediff a88e889; the file:line references say where. The samplers and the
CFG denoiser are in ``fake_samplers.py`` (real k-diffusion loops, the WebUI's own
sampling code re-expressed call for call). Here: script hooks that swallow exceptions,
the job's order of hooks, the API's ``with closing(p)``, shallow XYZ copies, and
AnimateDiff's motion-module injection, which a failed job leaves behind.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import fake_samplers as samplers
import torch
from fake_samplers import HOST, AfterCFGCallbackParams, CFGDenoiserParams  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
REPORTED = HOST.reported  # what modules.errors.report would have printed


# ---------------------------------------------------------------- modules.errors
def report(message: str, exc_info: bool = False) -> None:  # modules/errors.py:report
    REPORTED.append(message)


# ------------------------------------------------------- modules.script_callbacks
CALLBACKS = HOST.callbacks


def _register(kind: str):
    def on(callback, *, name=None):  # e.g. modules/script_callbacks.py:523 on_cfg_denoiser
        CALLBACKS.setdefault(kind, []).append(callback)

    return on


_fire = HOST.fire


# -------------------------------------------------------------- modules.scripts
class AlwaysVisibleType:
    pass


AlwaysVisible = AlwaysVisibleType()


class PostSampleArgs:  # modules/scripts.py:28
    def __init__(self, samples):
        self.samples = samples


class Script:  # modules/scripts.py:33
    args_from = None
    args_to = None
    infotext_fields = None
    paste_field_names = None
    is_txt2img = False
    is_img2img = True

    def elem_id(self, item_id):
        tab = "img2img" if self.is_img2img else "txt2img"
        return f"script_{tab}_{self.title().lower().replace(' ', '_')}_{item_id}"


class ScriptClassData:  # modules/scripts.py ScriptClassData(script_class, path, basedir, module)
    def __init__(self, script_class, path, basedir, module):
        self.script_class, self.path, self.basedir, self.module = (
            script_class,
            path,
            basedir,
            module,
        )


scripts_data: list[ScriptClassData] = []


class ScriptRunner:
    """The hook calls of modules/scripts.py:820-910: each wrapped in try/except Exception."""

    def __init__(self, alwayson_scripts):
        self.alwayson_scripts = alwayson_scripts

    def _each(self, hook: str, p, *args, **kwargs):
        for script in self.alwayson_scripts:
            method = getattr(script, hook, None)
            if method is None:
                continue
            try:
                method(p, *args, *p.script_args[script.args_from : script.args_to], **kwargs)
            except Exception as error:
                REPORTED.append(f"{hook}: {error!r}")

    def setup(self, p):  # modules/scripts.py:987-996
        self._each("setup", p)

    def before_process(self, p):
        self._each("before_process", p)

    def process(self, p):
        self._each("process", p)

    def before_process_batch(self, p, **kwargs):
        self._each("before_process_batch", p, **kwargs)

    def process_before_every_sampling(self, p, **kwargs):
        self._each("process_before_every_sampling", p, **kwargs)

    def post_sample(self, p, ps):
        self._each("post_sample", p, ps)

    def postprocess(self, p, processed):
        self._each("postprocess", p, processed)


# ------------------------------------------------------------- modules.processing
class ImageRNG:  # modules/rng.py:99-160: one noise tensor per next()
    def __init__(self, shape, seed):
        self.shape = shape
        self.generator = torch.Generator().manual_seed(seed)

    def next(self):
        return torch.randn(self.shape, generator=self.generator)


class StableDiffusionProcessing:  # modules/processing.py:140-420 (the fields used here)
    def __init__(
        self, *, steps=8, script_args=(), runner=None, n_iter=1, seed=0, sampler_name="Euler"
    ):
        opts = HOST.opts
        self.steps = steps
        self.denoising_strength = 1.0
        self.script_args = list(script_args)
        self.scripts = runner
        self.n_iter = n_iter
        self.batch_size = 1
        self.extra_generation_params: dict[str, Any] = {}
        self.comments: dict[str, int] = {}
        self.eta = None
        self.seed = seed
        self.sampler_name = sampler_name
        self.scheduler = None
        self.cfg_scale = 7.0
        self.s_min_uncond = 0.0
        self.s_churn, self.s_tmin = opts.s_churn, opts.s_tmin  # processing.py:256-259
        self.s_tmax, self.s_noise = opts.s_tmax or float("inf"), opts.s_noise
        self.sd_model = HOST.sd_model
        self.closed = False
        self.iteration = 0
        self.size = 8

    def comment(self, text):  # modules/processing.py:296
        self.comments[text] = 1

    def close(self):  # modules/processing.py:404-410
        self.sampler = None
        self.closed = True

    def conds(self, rows):
        return torch.ones(rows, 1), -torch.ones(rows, 1)


class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    def init(self, all_prompts=None, all_seeds=None, all_subseeds=None):
        self.sampler = samplers.create_sampler(self.sampler_name)

    def sample(self, batch_number=0):  # modules/processing.py:1307-1330 (no hires fix)
        x = self.rng.next()
        c, uc = self.conds(x.shape[0])
        image_cond = x.new_zeros(x.shape[0], 5, 1, 1)
        return self.sampler.sample(self, x, c, uc, image_conditioning=image_cond)


class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    """init() encodes the picture once per frame with a little posterior noise (processing.py:1557+)."""

    image_mask: torch.Tensor | None = None  # latent-sized, 1 = repaint

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.init_images = [object()]
        self.mask = self.nmask = None

    def init(self, all_prompts=None, all_seeds=None, all_subseeds=None):
        self.sampler = samplers.create_sampler(self.sampler_name)
        g = torch.Generator().manual_seed(99)
        image = torch.randn(1, 4, self.size, self.size, generator=g)
        self.picture_latent = image
        posterior_noise = 1e-3 * torch.randn(self.batch_size, 4, self.size, self.size)  # unseeded
        self.init_latent = image.repeat(self.batch_size, 1, 1, 1) + posterior_noise
        self.first_encoding = self.init_latent[:1].clone()
        if self.image_mask is not None:  # processing.py:1735-1746
            self.mask = (1.0 - self.image_mask).expand(4, -1, -1)
            self.nmask = self.image_mask.expand(4, -1, -1)

    def sample(self, batch_number=0):  # modules/processing.py:1759-1789
        x = self.rng.next()
        c, uc = self.conds(x.shape[0])
        if self.scripts is not None:
            self.scripts.process_before_every_sampling(
                p=self, x=self.init_latent, noise=x, c=c, uc=uc
            )
        image_cond = x.new_zeros(x.shape[0], 5, 1, 1)
        samples = self.sampler.sample_img2img(
            self, self.init_latent, x, c, uc, image_conditioning=image_cond
        )
        if self.mask is not None:
            samples = samples * self.nmask + self.init_latent * self.mask
        return samples


class Processed:
    def __init__(self, p, samples):
        self.samples = samples
        self.extra_generation_params = dict(p.extra_generation_params)
        self.comments = "".join(f"{c}\n" for c in p.comments)


def process_images(p) -> Processed:
    """modules/processing.py:819-1148 without decoding: a hook's exception is logged, but an
    exception from init/sample ends the job there and every postprocess is skipped."""
    p.scripts.before_process(p)
    p.scripts.process(p)
    p.init()
    p.all_seeds = [p.seed + i for i in range(p.n_iter * p.batch_size)]
    samples = []
    for n in range(p.n_iter):
        p.iteration = n
        p.rng = ImageRNG((p.batch_size, 4, p.size, p.size), p.seed + n)  # processing.py:950
        p.scripts.before_process_batch(p, batch_number=n)
        ps = PostSampleArgs(p.sample(batch_number=n))
        p.scripts.post_sample(p, ps)
        samples.append(ps.samples)
    processed = Processed(p, samples)
    p.scripts.postprocess(p, processed)
    return processed


def run_job(p) -> Processed:
    """An API request (modules/api/api.py:538): ``with closing(p): process_images(p)``."""
    try:
        return process_images(p)
    finally:
        p.close()


# ----------------------------------------------------------------- AnimateDiff
class AnimateDiffMM:
    """scripts/animatediff_mm.py:13-215: injection is process-wide (a class flag)."""

    mm_injected = False

    def __init__(self):
        self.prev_alpha_cumprod = None
        self.frames = 8

    def inject(self, sd_model, frames):  # :62-115
        if AnimateDiffMM.mm_injected:
            self.restore(sd_model)
        sd_model.motion_frames = frames
        self.prev_alpha_cumprod = sd_model.alphas_cumprod  # _set_ddim_alpha :161-180
        sd_model.alphas_cumprod = samplers.linear_alphas_cumprod(squared=False)
        AnimateDiffMM.mm_injected = True

    def restore(self, sd_model):  # :118-158
        if not AnimateDiffMM.mm_injected:
            return
        sd_model.alphas_cumprod = self.prev_alpha_cumprod
        sd_model.motion_frames = None
        AnimateDiffMM.mm_injected = False


animatediff_mm = types.ModuleType("scripts.animatediff_mm")
animatediff_mm.AnimateDiffMM = AnimateDiffMM
animatediff_mm.mm_animatediff = AnimateDiffMM()


class AnimateDiffProcess:
    """scripts/animatediff_ui.py:31-90: AnimateDiff's one argument, built from the API dict."""

    def __init__(self, enable=False, video_length=16, batch_size=16, freeinit_enable=False, **rest):
        self.enable, self.video_length, self.batch_size = enable, video_length, batch_size
        self.freeinit_enable = freeinit_enable
        self.last_frame = rest.pop("last_frame", None)
        self.is_i2i_batch = rest.pop("is_i2i_batch", False)
        self.prompt_scheduler = None
        self.__dict__.update(rest)


class FakeAnimateDiff(Script):
    """scripts/animatediff.py:28-99 as the glue sees it, including its failure with
    ControlNet units sent over the API (animatediff_utils.py:48-71, animatediff_ui.py:175)."""

    def __init__(self):
        self.hacked = False

    def title(self):
        return "AnimateDiff"

    def before_process(self, p, params):  # :53-74 + animatediff_ui.py:161-213 set_p
        if isinstance(params, dict):  # get_animatediff_arg (animatediff_utils.py:29-46)
            params = AnimateDiffProcess(**params)
            p.script_args = list(p.script_args)
            p.script_args[self.args_from] = params
        motion_module = animatediff_mm.mm_animatediff
        if params.enable:
            motion_module.inject(p.sd_model, params.video_length)
            p.batch_size = max(params.video_length, params.batch_size)
            units = controlnet_units(p)
            if p.is_api and units and isinstance(units[0], dict):  # get_controlnet_units
                raise AttributeError("'ControlNetUnit' object has no attribute 'get'")
            params.prompt_scheduler = types.SimpleNamespace(save_infotext_txt=lambda res: None)
            p.extra_generation_params["AnimateDiff"] = f"video_length: {params.video_length}"
            self.hacked = True
        elif self.hacked:
            motion_module.restore(p.sd_model)
            self.hacked = False

    def before_process_batch(self, p, params, **kwargs):  # scripts/animatediff_latent.py
        if params.enable and isinstance(p, StableDiffusionProcessingImg2Img):
            frames = p.init_latent.shape[0]
            alpha = torch.tensor([1 - i / 32 for i in range(frames)]).view(-1, 1, 1, 1)
            p.init_latent = p.init_latent * alpha + torch.randn_like(p.init_latent) * (1 - alpha)

    def postprocess(self, p, res, params):  # :92-98: a failed setup raises before restoring
        if params.enable:
            params.prompt_scheduler.save_infotext_txt(res)
            animatediff_mm.mm_animatediff.restore(p.sd_model)
            self.hacked = False


class FakeControlNet(Script):
    """sd-webui-controlnet 1.1.455 as far as it concerns us: it changes what the UNet
    predicts (a residual from its control), never the sampler's x or noise, and runs as
    one script with one argument per unit (dicts over the API)."""

    def title(self):
        return "ControlNet"

    def process(self, p, *units):
        weights = [_unit(u, "weight", 1.0) for u in units if _unit(u, "enabled", False)]
        if not weights:
            return
        model, original = p.sd_model, p.sd_model.apply_model
        strength = 0.05 * sum(weights)

        def controlled(x, t, cond):  # hook.py: its own UNet forward, plus the control
            return original(x, t, cond) + strength * torch.tanh(x)

        model.apply_model = controlled
        self._unhook = lambda: model.__dict__.pop("apply_model", None)

    def postprocess(self, p, processed, *units):
        unhook = getattr(self, "_unhook", None)
        if unhook is not None:
            unhook()
            self._unhook = None


def _unit(unit, name, default):
    return unit.get(name, default) if isinstance(unit, dict) else getattr(unit, name, default)


def controlnet_units(p):
    for script in p.scripts.alwayson_scripts:
        if script.title().lower() == "controlnet":
            return list(p.script_args[script.args_from : script.args_to])
    return []


#: One AnimateDiff script object per tab, as the WebUI keeps one script runner per tab.
ANIMATEDIFF = {"txt2img": FakeAnimateDiff(), "img2img": FakeAnimateDiff()}


# ------------------------------------------------------------------- gradio fake
class Component:
    created: ClassVar[list[Component]] = []

    def __init__(self, value=None, **kwargs):
        self.value = value
        self.kwargs = kwargs
        self.elem_id = kwargs.get("elem_id")
        self.label = kwargs.get("label")
        self.events: list[tuple[str, Any, list, list]] = []
        Component.created.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def _event(name):
        def register(self, fn=None, inputs=None, outputs=None, **kwargs):
            self.events.append((name, fn, list(inputs or []), list(outputs or [])))

        return register

    change = _event("change")
    input = _event("input")
    click = _event("click")


class Radio(Component):
    def __init__(self, choices=None, value=None, **kwargs):
        super().__init__(value, choices=choices, **kwargs)


class Slider(Component):
    def __init__(self, minimum=0, maximum=100, step=1, value=None, **kwargs):
        super().__init__(value, minimum=minimum, maximum=maximum, step=step, **kwargs)


_installed: list[types.ModuleType] = []


def install() -> types.ModuleType:
    """Put the fakes in sys.modules and import the real script module once; returns it.

    Importing the script registers its callbacks (once, as the WebUI loads it once)."""
    if _installed:
        return _installed[0]
    modules = types.ModuleType("modules")
    modules.__path__ = []
    errors_mod = types.ModuleType("modules.errors")
    errors_mod.report = report
    callbacks_mod = types.ModuleType("modules.script_callbacks")
    for kind in (
        "cfg_denoiser",
        "cfg_after_cfg",
        "after_component",
        "before_ui",
        "script_unloaded",
    ):
        setattr(callbacks_mod, f"on_{kind}", _register(kind))
    scripts_mod = types.ModuleType("modules.scripts")
    scripts_mod.Script, scripts_mod.AlwaysVisible = Script, AlwaysVisible
    scripts_mod.PostSampleArgs, scripts_mod.scripts_data = PostSampleArgs, scripts_data
    processing_mod = types.ModuleType("modules.processing")
    processing_mod.StableDiffusionProcessingImg2Img = StableDiffusionProcessingImg2Img
    processing_mod.StableDiffusionProcessingTxt2Img = StableDiffusionProcessingTxt2Img
    shared_mod = types.ModuleType("modules.shared")
    shared_mod.opts = HOST.opts
    shared_mod.state = HOST.state
    common_mod = types.ModuleType("modules.sd_samplers_common")
    common_mod.setup_img2img_steps = samplers.setup_img2img_steps
    ui_components = types.ModuleType("modules.ui_components")
    ui_components.InputAccordion = lambda value, **kw: Component(value, **kw)
    gradio = types.ModuleType("gradio")
    for name in ("Textbox", "Number", "HTML", "Markdown", "Checkbox", "Image"):
        setattr(gradio, name, type(name, (Component,), {}))
    gradio.Radio, gradio.Slider = Radio, Slider
    gradio.Row = type("Row", (Component,), {})
    for module in (
        errors_mod,
        callbacks_mod,
        scripts_mod,
        processing_mod,
        shared_mod,
        common_mod,
        ui_components,
    ):
        setattr(modules, module.__name__.split(".")[1], module)
        sys.modules[module.__name__] = module
    sys.modules["modules"] = modules
    sys.modules["gradio"] = gradio
    sys.modules["scripts.animatediff_mm"] = animatediff_mm
    shared_mod.sd_model = HOST.sd_model

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    spec = importlib.util.spec_from_file_location(
        "noise_rectification_script", ROOT / "scripts" / "noise_rectification.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _installed.append(module)
    return module


def fake_xyz_module() -> types.SimpleNamespace:
    """scripts/xyz_grid.py as the glue registers into it: ``AxisOption`` (214-235), a list."""

    class AxisOption:
        def __init__(
            self,
            label,
            type,
            apply,
            format_value=None,
            confirm=None,
            cost=0.0,
            choices=None,
            prepare=None,
        ):
            self.label, self.type, self.apply = label, type, apply
            self.confirm, self.choices = confirm, choices

    return types.SimpleNamespace(
        axis_options=[AxisOption("Nothing", str, None)], AxisOptionImg2Img=AxisOption
    )


def make_job(
    script_class,
    rect_args,
    *,
    frames=8,
    ad: dict | None = None,
    p_class=None,
    steps=8,
    sampler="Euler",
    n_iter=1,
    seed=0,
    controlnet: list | None = None,
    api=True,
):
    """A job laid out as the host does: AnimateDiff (slot 0), ControlNet's units when given,
    then our script (extensions in folder-name order); ``setup`` runs on construction."""
    p_class = p_class or StableDiffusionProcessingImg2Img
    tab = "img2img" if p_class is StableDiffusionProcessingImg2Img else "txt2img"
    animatediff = ANIMATEDIFF[tab]
    animatediff.args_from, animatediff.args_to = 0, 1
    scripts = [animatediff]
    script_args = [{"enable": True, "video_length": frames, "batch_size": frames, **(ad or {})}]
    if controlnet is not None:
        cn = FakeControlNet()
        cn.args_from, cn.args_to = 1, 1 + len(controlnet)
        scripts.append(cn)
        script_args += list(controlnet)
    ours = script_class()
    ours.args_from, ours.args_to = len(script_args), len(script_args) + len(rect_args)
    scripts.append(ours)
    p = p_class(
        steps=steps,
        script_args=[*script_args, *rect_args],
        runner=ScriptRunner(scripts),
        n_iter=n_iter,
        seed=seed,
        sampler_name=sampler,
    )
    p.is_api = api
    p.scripts.setup(p)  # processing.py:278-294 setup_scripts, when script_args are set
    return p


def reset_host() -> None:
    """A fresh process: no motion module injected, default settings, no reports."""
    animatediff_mm.mm_animatediff.restore(HOST.sd_model)
    for script in ANIMATEDIFF.values():
        script.hacked = False
    HOST.opts.__dict__.update(samplers.DEFAULT_OPTS)
    HOST.state.interrupted = HOST.state.skipped = False
    REPORTED.clear()
