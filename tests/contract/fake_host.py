"""A small fake of the host interfaces the glue touches, installed into ``sys.modules``.

Every name mirrors AUTOMATIC1111 stable-diffusion-webui v1.10.1 (commit 82a973c) and
sd-webui-animatediff a88e889; the file:line references say where. Only what the glue
uses is here, with the host's behaviour where it matters (hooks swallow exceptions,
callbacks fire once per model call, x_in = [cond, uncond], shallow XYZ copies).
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import torch

ROOT = Path(__file__).resolve().parents[2]
REPORTED: list[str] = []  # what modules.errors.report would have printed


# ---------------------------------------------------------------- modules.errors
def report(message: str, exc_info: bool = False) -> None:  # modules/errors.py:report
    REPORTED.append(message)


# ------------------------------------------------------- modules.script_callbacks
class CFGDenoiserParams:  # modules/script_callbacks.py:45
    def __init__(
        self,
        x,
        image_cond,
        sigma,
        sampling_step,
        total_sampling_steps,
        text_cond,
        text_uncond,
        denoiser=None,
    ):
        self.x, self.image_cond, self.sigma = x, image_cond, sigma
        self.sampling_step, self.total_sampling_steps = sampling_step, total_sampling_steps
        self.text_cond, self.text_uncond, self.denoiser = text_cond, text_uncond, denoiser


class AfterCFGCallbackParams:  # modules/script_callbacks.py:87
    def __init__(self, x, sampling_step, total_sampling_steps):
        self.x, self.sampling_step, self.total_sampling_steps = (
            x,
            sampling_step,
            total_sampling_steps,
        )


CALLBACKS: dict[str, list[Any]] = {}


def _register(kind: str):
    def on(callback, *, name=None):  # e.g. modules/script_callbacks.py:523 on_cfg_denoiser
        CALLBACKS.setdefault(kind, []).append(callback)

    return on


def _fire(
    kind: str, params: Any
) -> None:  # modules/script_callbacks.py:346-351: errors are reported, not raised
    for callback in CALLBACKS.get(kind, []):
        try:
            callback(params)
        except Exception as error:
            REPORTED.append(f"{kind}: {error!r}")


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
    """The hook calls of modules/scripts.py:820-900: each wrapped in try/except Exception."""

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


# ----------------------------------------------------------------- models and samplers
def sd_alphas_cumprod() -> torch.Tensor:
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0).float()


class ToyVideoModel:
    """Stands in for the UNet + motion module: mixes frames, depends on sigma, is no identity."""

    def __init__(self, frames: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.mix = torch.softmax(torch.randn(frames, frames, generator=g), dim=1)
        self.shift = torch.randn(4, generator=g).view(1, 4, 1, 1)

    def denoised(self, x, sigma, cond_sign: float):
        frames = self.mix.shape[0]
        videos = x.reshape(-1, frames, *x.shape[1:])
        mixed = torch.einsum("fg,bgchw->bfchw", self.mix, videos).reshape(x.shape)
        s = sigma.view(-1, 1, 1, 1)
        return torch.tanh(mixed / (1 + s)) + cond_sign * 0.1 * self.shift / (1 + s)


class CFGDenoiser:  # modules/sd_samplers_cfg_denoiser.py:33-304, the parts the glue sees
    def __init__(self, sampler, family: str):
        self.sampler, self.family = sampler, family
        self.p = None
        self.init_latent = None
        self.step = 0

    def __call__(self, x, sigma, cond_scale: float = 7.0):
        frames = x.shape[0]
        x_in = torch.cat([x, x])  # :204-206 (no AND prompts: one cond copy per image)
        sigma_in = torch.cat([sigma, sigma])
        params = CFGDenoiserParams(x_in, None, sigma_in, 0, 0, None, None, self)
        _fire("cfg_denoiser", params)
        x_in, sigma_in = params.x, params.sigma
        model = self.sampler.model
        if self.family == "denoiser":
            cond = model.denoised(x_in[:frames], sigma_in[:frames], 1.0)
            uncond = model.denoised(x_in[frames:], sigma_in[frames:], -1.0)
        else:  # timestep samplers: the model gives ε; sigma_in holds timesteps
            abar = shared.sd_model.alphas_cumprod[sigma_in.long()].view(-1, 1, 1, 1)
            s = ((1 - abar) / abar).sqrt()
            xs = x_in / abar.sqrt()
            d_c = model.denoised(xs[:frames], s[:frames].flatten(), 1.0)
            d_u = model.denoised(xs[frames:], s[frames:].flatten(), -1.0)
            cond = (xs[:frames] - d_c) / s[:frames]
            uncond = (xs[frames:] - d_u) / s[frames:]
        combined = uncond + cond_scale * (cond - uncond)
        after = AfterCFGCallbackParams(combined, 0, 0)
        _fire("cfg_after_cfg", after)
        self.step += 1
        return after.x


class KDiffusionSampler:  # modules/sd_samplers_kdiffusion.py (Euler; Heun with two_calls)
    eta_option_field = "eta_ancestral"

    def __init__(self, name: str = "Euler", frames: int = 8, options: dict | None = None):
        self.config = types.SimpleNamespace(name=name, options=options or {})
        self.funcname = "sample_heun" if name == "Heun" else "sample_euler"
        self.model = ToyVideoModel(frames)
        self.model_wrap_cfg = CFGDenoiser(self, "denoiser")
        self.steps_seen: list[int] = []

    def get_sigmas(self, p, steps):
        ramp = torch.linspace(0, 1, steps)
        rho = 7.0
        sigmas = (14.6 ** (1 / rho) + ramp * (0.03 ** (1 / rho) - 14.6 ** (1 / rho))) ** rho
        return torch.cat([sigmas, torch.zeros(1)])

    def callback_state(self, d):  # modules/sd_samplers_common.py:256
        self.steps_seen.append(d["i"])

    def sample_img2img(self, p, x, noise):  # modules/sd_samplers_kdiffusion.py:134-188
        steps, t_enc = setup_img2img_steps(p)
        sigmas = self.get_sigmas(p, steps)[steps - t_enc - 1 :]
        xi = x + noise * sigmas[0]
        self.model_wrap_cfg.init_latent = x
        self.model_wrap_cfg.p = p
        callback = self.callback_state
        frames = x.shape[0]
        for i in range(len(sigmas) - 1):
            s = torch.full((frames,), float(sigmas[i]))
            denoised = self.model_wrap_cfg(xi, s)
            d = (xi - denoised) / sigmas[i]
            dt = sigmas[i + 1] - sigmas[i]
            if self.config.name == "Heun" and sigmas[i + 1] > 0:
                x2 = xi + d * dt
                denoised2 = self.model_wrap_cfg(x2, torch.full((frames,), float(sigmas[i + 1])))
                d = (d + (x2 - denoised2) / sigmas[i + 1]) / 2
            xi = xi + d * dt
            callback({"i": i, "x": xi})
        return xi


class CompVisSampler:  # modules/sd_samplers_timesteps.py:75-139 + _impl.ddim (η = 0)
    eta_option_field = "eta_ddim"

    def __init__(self, name: str = "DDIM", frames: int = 8):
        self.config = types.SimpleNamespace(name=name, options={})
        self.funcname = "ddim"
        self.model = ToyVideoModel(frames)
        self.model_wrap_cfg = CFGDenoiser(self, "eps")
        self.steps_seen: list[int] = []

    def get_timesteps(self, p, steps):
        return torch.clip(torch.arange(0, 1000, 1000 // steps) + 1, 0, 999)

    def callback_state(self, d):
        self.steps_seen.append(d["i"])

    def sample_img2img(self, p, x, noise):
        steps, t_enc = setup_img2img_steps(p)
        timesteps = self.get_timesteps(p, steps)
        sched = timesteps[:t_enc]
        abars = shared.sd_model.alphas_cumprod
        a = abars[timesteps[t_enc]]
        xi = x * a.sqrt() + noise * (1 - a).sqrt()
        self.model_wrap_cfg.init_latent = x
        self.model_wrap_cfg.p = p
        callback = self.callback_state
        frames = x.shape[0]
        for i in range(len(sched) - 1):
            index = len(sched) - 1 - i
            t = sched[index]
            e_t = self.model_wrap_cfg(xi, torch.full((frames,), float(t)))
            a_t, a_prev = abars[t], abars[sched[index - 1]]
            pred_x0 = (xi - (1 - a_t).sqrt() * e_t) / a_t.sqrt()
            xi = a_prev.sqrt() * pred_x0 + (1 - a_prev).sqrt() * e_t
            callback({"i": i, "x": xi})
        return xi


def setup_img2img_steps(
    p, steps=None
):  # modules/sd_samplers_common.py:22-31 (img2img_fix_steps off)
    steps = steps or p.steps
    return steps, int(min(p.denoising_strength, 0.999) * steps)


# ------------------------------------------------------------- modules.processing
class StableDiffusionProcessing:
    def __init__(self, *, steps=8, script_args=(), runner=None, n_iter=1, seed=0):
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
        self.sampler_name = "Euler"
        self.init_images = [object()]

    def comment(self, text):  # modules/processing.py:296
        self.comments[text] = 1


class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    pass


class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    """init() encodes the picture once per frame with a little posterior noise (processing.py:1557+)."""

    make_sampler = staticmethod(lambda p: KDiffusionSampler("Euler", p.batch_size))

    def init(self, all_prompts=None, all_seeds=None, all_subseeds=None):
        g = torch.Generator().manual_seed(99)
        image = torch.randn(1, 4, 8, 8, generator=g)
        self.picture_latent = image
        posterior_noise = 1e-3 * torch.randn(self.batch_size, 4, 8, 8)  # unseeded, like the host
        self.init_latent = image.repeat(self.batch_size, 1, 1, 1) + posterior_noise
        self.first_encoding = self.init_latent[:1].clone()
        self.sampler = self.make_sampler(self)

    def sample(self, batch_number=0):  # modules/processing.py:1759-1789
        g = torch.Generator().manual_seed(self.seed + batch_number)
        x = torch.randn(self.init_latent.shape, generator=g)
        if self.scripts is not None:
            self.scripts.process_before_every_sampling(
                p=self, x=self.init_latent, noise=x, c=None, uc=None
            )
        return self.sampler.sample_img2img(self, self.init_latent, x)


class Processed:
    def __init__(self, p, samples):
        self.samples = samples
        self.extra_generation_params = dict(p.extra_generation_params)
        self.comments = "".join(f"{c}\n" for c in p.comments)


def process_images(p) -> Processed:
    """The order of modules/processing.py:821-1148, without decoding."""
    p.scripts.before_process(p)
    p.scripts.process(p)
    p.init()
    samples = []
    for n in range(p.n_iter):
        p.scripts.before_process_batch(p, batch_number=n)
        ps = PostSampleArgs(p.sample(batch_number=n))
        p.scripts.post_sample(p, ps)
        samples.append(ps.samples)
    processed = Processed(p, samples)
    p.scripts.postprocess(p, processed)
    return processed


# ----------------------------------------------------------------- AnimateDiff
class FakeAnimateDiff(Script):
    """sd-webui-animatediff a88e889 as the glue sees it: one dict/object argument."""

    def title(self):
        return "AnimateDiff"

    def before_process(self, p, params):  # scripts/animatediff.py:53 + animatediff_ui.py:161 set_p
        enabled = params.get("enable") if isinstance(params, dict) else params.enable
        if enabled:
            p.batch_size = max(params["video_length"], params.get("batch_size", 16))

    def before_process_batch(
        self, p, params, **kwargs
    ):  # scripts/animatediff_latent.py (blend to noise)
        if params.get("enable") and isinstance(p, StableDiffusionProcessingImg2Img):
            frames = p.init_latent.shape[0]
            alpha = torch.tensor([1 - i / 32 for i in range(frames)]).view(-1, 1, 1, 1)
            p.init_latent = p.init_latent * alpha + torch.randn_like(p.init_latent) * (1 - alpha)


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


def install() -> types.ModuleType:
    """Put the fakes in sys.modules and import the real script module; returns it."""
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
    shared_mod.opts = types.SimpleNamespace(eta_ancestral=1.0, eta_ddim=0.0)
    shared_mod.sd_model = types.SimpleNamespace(alphas_cumprod=sd_alphas_cumprod())
    common_mod = types.ModuleType("modules.sd_samplers_common")
    common_mod.setup_img2img_steps = setup_img2img_steps
    ui_components = types.ModuleType("modules.ui_components")
    ui_components.InputAccordion = lambda value, **kw: Component(value, **kw)
    gradio = types.ModuleType("gradio")
    for name in ("Textbox", "Number", "HTML", "Markdown", "Checkbox"):
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
    globals()["shared"] = shared_mod

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    spec = importlib.util.spec_from_file_location(
        "noise_rectification_script", ROOT / "scripts" / "noise_rectification.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


shared: Any = None  # set by install()


def make_job(
    script_class,
    rect_args,
    *,
    frames=8,
    ad: dict | None = None,
    p_class=None,
    steps=8,
    sampler=None,
    n_iter=1,
):
    """A job with AnimateDiff (args slot 0) and our script (slots 1..), as the host lays them out."""
    animatediff = FakeAnimateDiff()
    animatediff.args_from, animatediff.args_to = 0, 1
    ours = script_class()
    ours.args_from, ours.args_to = 1, 1 + len(rect_args)
    ad_args = {"enable": True, "video_length": frames, "batch_size": frames, **(ad or {})}
    runner = ScriptRunner([animatediff, ours])
    p = (p_class or StableDiffusionProcessingImg2Img)(
        steps=steps, script_args=[ad_args, *rect_args], runner=runner, n_iter=n_iter
    )
    if sampler is not None:
        p.make_sampler = sampler
    return p
