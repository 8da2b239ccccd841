"""The nodes in a real ComfyUI with AnimateDiff-Evolved, random weights, over HTTP (opt-in).

Run with ``COMFYUI_URL=http://127.0.0.1:8188 python -m pytest tests/comfyui/live`` against
the server of tests/comfyui/live/tools/SETUP.md. Latents are compared (SaveLatent, read
back through /view): the sampled video, and the node's own LATENT output, which is the
picture repeated over the frames. Settings are chosen so that a bug would show: windows
whose edges fall inside the run, two-call samplers, the last frame as reference, more
frames than the motion module's context.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from comfyui_client import ComfyUI, PromptFailed, PromptRefused, png_bytes, wan_on_test_host

ROOT = Path(__file__).resolve().parents[3]
CKPT = "random-sd15.safetensors"
SIZE, FRAMES, STEPS = 64, 8, 4
STILL = {"omega": "still", "tau_start_percent": 0.0, "tau_end_percent": 100.0}
PAPER = {"omega": "paper", "tau_start_percent": 0.0, "tau_end_percent": 60.0}


@pytest.fixture(scope="module")
def pictures(comfyui: ComfyUI) -> tuple[str, str]:
    from PIL import Image

    picture = (
        Image.open(ROOT / "bench" / "assets" / "sample.png").convert("RGB").resize((SIZE, SIZE))
    )
    pixels = np.asarray(picture, dtype=np.float32) / 255
    first = comfyui.upload_png(png_bytes(pixels), "nr_live_picture.png")
    last = comfyui.upload_png(png_bytes(pixels[::-1, ::-1] * 0.8 + 0.1), "nr_live_end.png")
    return first, last


def workflow(
    pictures: tuple[str, str],
    settings: dict | None,
    *,
    sampler: str = "euler",
    scheduler: str = "normal",
    steps: int = STEPS,
    frames: int = FRAMES,
    seed: int = 7,
    loader: str = "gen2",
    motion: str = "mm_sd15_v2.safetensors",
    ckpt: str = CKPT,
    size: int = SIZE,
    context: int | None = None,
    end: bool = False,
    advanced: tuple[int, int, str] | None = None,
    reference_frame: int = 0,
    enabled: bool = True,
    free_init: bool = False,
) -> dict:
    """API-format workflow; ``settings`` None: the same workflow without the node."""
    wf: dict = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "a photo of a cat", "clip": ["1", 1]},
        },
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "20": {"class_type": "LoadImage", "inputs": {"image": pictures[0]}},
        "21": {
            "class_type": "ImageScale",
            "inputs": {
                "image": ["20", 0],
                "upscale_method": "bilinear",
                "width": size,
                "height": size,
                "crop": "disabled",
            },
        },
        "22": {"class_type": "VAEEncode", "inputs": {"pixels": ["21", 0], "vae": ["1", 2]}},
    }
    model = ["1", 0]
    if loader == "gen1":
        wf["10"] = {
            "class_type": "ADE_AnimateDiffLoaderGen1",
            "inputs": {"model": model, "model_name": motion, "beta_schedule": "autoselect"},
        }
        if context:
            wf["10"]["inputs"]["context_options"] = ["12", 0]
        model = ["10", 0]
    else:
        wf["10"] = {"class_type": "ADE_LoadAnimateDiffModel", "inputs": {"model_name": motion}}
        wf["11"] = {
            "class_type": "ADE_ApplyAnimateDiffModelSimple",
            "inputs": {"motion_model": ["10", 0]},
        }
        wf["13"] = {
            "class_type": "ADE_UseEvolvedSampling",
            "inputs": {"model": model, "beta_schedule": "autoselect", "m_models": ["11", 0]},
        }
        if context:
            wf["13"]["inputs"]["context_options"] = ["12", 0]
        if free_init:
            wf["14"] = {
                "class_type": "ADE_IterationOptsFreeInit",
                "inputs": {
                    "iterations": 2,
                    "filter": "butterworth",
                    "d_s": 0.25,
                    "d_t": 0.25,
                    "n_butterworth": 4,
                    "sigma_step": 999,
                    "apply_to_1st_iter": False,
                    "init_type": "FreeInit [sampler sigma]",
                },
            }
            wf["15"] = {
                "class_type": "ADE_AnimateDiffSamplingSettings",
                "inputs": {
                    "batch_offset": 0,
                    "noise_type": "default",
                    "seed_gen": "comfy",
                    "seed_offset": 0,
                    "iteration_opts": ["14", 0],
                },
            }
            wf["13"]["inputs"]["sample_settings"] = ["15", 0]
        model = ["13", 0]
    if context:
        wf["12"] = {
            "class_type": "ADE_StandardUniformContextOptions",
            "inputs": {
                "context_length": context,
                "context_stride": 1,
                "context_overlap": 4,
                "fuse_method": "pyramid",
                "use_on_equal_length": False,
                "start_percent": 0.0,
                "guarantee_steps": 1,
            },
        }
    if settings is None:
        wf["30"] = {
            "class_type": "RepeatLatentBatch",
            "inputs": {"samples": ["22", 0], "amount": frames},
        }
        latent = ["30", 0]
    else:
        inputs = {
            "model": model,
            "picture": ["22", 0],
            "frames": frames,
            "reference_frame": reference_frame,
            "enabled": enabled,
            **PAPER,
            **settings,
        }
        if end:
            wf["23"] = {"class_type": "LoadImage", "inputs": {"image": pictures[1]}}
            wf["24"] = {
                "class_type": "ImageScale",
                "inputs": {
                    "image": ["23", 0],
                    "upscale_method": "bilinear",
                    "width": size,
                    "height": size,
                    "crop": "disabled",
                },
            }
            wf["25"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["24", 0], "vae": ["1", 2]}}
            inputs["end_picture"] = ["25", 0]
        wf["30"] = {"class_type": "NoiseRectification", "inputs": inputs}
        model, latent = ["30", 0], ["30", 1]
    common = {
        "model": model,
        "seed": seed,
        "steps": steps,
        "cfg": 7.0,
        "sampler_name": sampler,
        "scheduler": scheduler,
        "positive": ["2", 0],
        "negative": ["3", 0],
        "latent_image": latent,
    }
    if advanced:
        start, end_step, leftover = advanced
        wf["40"] = {
            "class_type": "KSamplerAdvanced",
            "inputs": {
                **common,
                "noise_seed": common.pop("seed"),
                "add_noise": "enable",
                "start_at_step": start,
                "end_at_step": end_step,
                "return_with_leftover_noise": leftover,
            },
        }
    else:
        wf["40"] = {"class_type": "KSampler", "inputs": {**common, "denoise": 1.0}}
    wf["50"] = {
        "class_type": "SaveLatent",
        "inputs": {"samples": ["40", 0], "filename_prefix": "nr_live/video"},
    }
    wf["51"] = {
        "class_type": "SaveLatent",
        "inputs": {"samples": latent, "filename_prefix": "nr_live/start"},
    }
    return wf


def run(comfyui: ComfyUI, wf: dict) -> tuple[np.ndarray, np.ndarray]:
    latents = comfyui.run(wf)
    return latents["50"], latents["51"]


def close(a: np.ndarray, b: np.ndarray, rel: float = 1e-3) -> bool:
    return bool(np.abs(a - b).max() <= rel * np.abs(b).max())


def diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max())


# ------------------------------------------------------------------------ the picture
@pytest.mark.parametrize(
    "sampler",
    ["euler", "dpmpp_2m", "ddim", "euler_ancestral", "lcm", "heun", "uni_pc", "dpm_2_ancestral"],
)
def test_still_window_gives_identical_frames_equal_to_the_picture(comfyui, pictures, sampler):
    video, start = run(comfyui, workflow(pictures, STILL, sampler=sampler))
    assert video.shape == (FRAMES, 4, SIZE // 8, SIZE // 8)
    assert close(video, start), diff(video, start)
    off, _ = run(comfyui, workflow(pictures, None, sampler=sampler))
    assert not close(off, start, 0.05)  # without the node the frames are not the picture


@pytest.mark.parametrize("reference", [0, -1])
def test_free_omega_keeps_the_reference_frame_exact(comfyui, pictures, reference):
    video, start = run(
        comfyui,
        workflow(
            pictures,
            {"omega": "free", "tau_end_percent": 100.0},
            sampler="dpmpp_2m",
            reference_frame=reference,
        ),
    )
    assert close(video[reference], start[reference])
    others = [f for f in range(FRAMES) if f != reference % FRAMES]
    assert max(diff(video[f], start[f]) for f in others) > 0.05 * np.abs(start).max()


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral"])
def test_two_anchors_hold_both_ends(comfyui, pictures, sampler):
    video, start = run(
        comfyui,
        workflow(pictures, {"omega": "free", "tau_end_percent": 100.0}, sampler=sampler, end=True),
    )
    assert close(video[0], start[0]) and close(video[-1], start[-1])
    assert not close(start[0], start[-1], 0.05)  # two different pictures


@pytest.mark.parametrize(
    "settings", [{"enabled": False}, {"tau_start_percent": 40.0, "tau_end_percent": 40.0}]
)
def test_off_or_an_empty_window_is_bit_identical_to_the_workflow_without_the_node(
    comfyui, pictures, settings
):
    settings = dict(settings)
    enabled = settings.pop("enabled", True)
    with_node, start = run(
        comfyui, workflow(pictures, settings, enabled=enabled, sampler="dpmpp_2m")
    )
    without, repeated = run(comfyui, workflow(pictures, None, sampler="dpmpp_2m"))
    assert np.array_equal(start, repeated)
    assert np.array_equal(with_node, without)


@pytest.mark.parametrize("sampler", ["heun", "dpmpp_2m"])
def test_a_partial_window_rectifies_exactly_its_steps(comfyui, pictures, sampler):
    """4 steps: τ 0-50 % and 0-45 % both rectify steps 0-1 (bit-identical); 0-60 % adds step 2."""
    a, _ = run(comfyui, workflow(pictures, {"tau_end_percent": 50.0}, sampler=sampler))
    b, _ = run(comfyui, workflow(pictures, {"tau_end_percent": 45.0}, sampler=sampler))
    c, _ = run(comfyui, workflow(pictures, {"tau_end_percent": 60.0}, sampler=sampler))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_ksampler_advanced_window_is_a_fraction_of_the_steps_it_runs(comfyui, pictures):
    """Steps 2-6 of 8 sample 4 steps; a still window over them ends on the picture, and
    τ 0-50 % of those 4 (2 steps) equals 0-45 % but not 0-60 %."""
    video, start = run(comfyui, workflow(pictures, STILL, steps=8, advanced=(2, 6, "disable")))
    assert close(video, start)
    a, _ = run(
        comfyui, workflow(pictures, {"tau_end_percent": 50.0}, steps=8, advanced=(2, 6, "disable"))
    )
    b, _ = run(
        comfyui, workflow(pictures, {"tau_end_percent": 45.0}, steps=8, advanced=(2, 6, "disable"))
    )
    c, _ = run(
        comfyui, workflow(pictures, {"tau_end_percent": 60.0}, steps=8, advanced=(2, 6, "disable"))
    )
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_leftover_noise_is_refused_and_the_next_prompt_is_as_before(comfyui, pictures):
    before, _ = run(comfyui, workflow(pictures, PAPER, sampler="euler"))
    with pytest.raises(
        PromptFailed, match=r"Noise Rectification \(image to video\) \(node 30\): last σ"
    ):
        run(comfyui, workflow(pictures, PAPER, steps=8, advanced=(0, 5, "enable")))
    after, _ = run(comfyui, workflow(pictures, PAPER, sampler="euler"))
    assert np.array_equal(before, after)


def test_free_init_is_refused_with_a_message(comfyui, pictures):
    with pytest.raises(PromptFailed, match="iterations = 2"):
        run(comfyui, workflow(pictures, PAPER, free_init=True))


def test_bad_settings_are_refused_when_queued_naming_the_node_and_field(comfyui, pictures):
    with pytest.raises(PromptRefused) as info:
        comfyui.queue(workflow(pictures, {"omega": "0.5, nan"}))
    errors = info.value.body["node_errors"]["30"]
    assert errors["class_type"] == "NoiseRectification"
    assert any(
        "omega = '0.5, nan' is invalid" in e.get("details", "") + e.get("message", "")
        for e in errors["errors"]
    )
    with pytest.raises(PromptRefused, match="tau_start_percent = 70"):
        comfyui.queue(workflow(pictures, {"tau_start_percent": 70.0, "tau_end_percent": 60.0}))
    with pytest.raises(PromptRefused, match="reference_frame = 8"):
        comfyui.queue(workflow(pictures, PAPER, reference_frame=8))


def test_an_end_picture_with_a_middle_reference_frame_is_refused(comfyui, pictures):
    with pytest.raises(PromptFailed, match=r"\(node 30\): reference_frame = 3 is invalid; 0 or -1"):
        run(comfyui, workflow(pictures, PAPER, end=True, reference_frame=3))


# --------------------------------------------------------------- loaders and modules
@pytest.mark.parametrize(
    ("loader", "motion", "sampler"),
    [
        ("gen1", "mm_sd15_v2.safetensors", "euler"),
        ("gen2", "mm_sd15_v3.safetensors", "dpmpp_2m"),
        ("gen1", "mm_sd15_AnimateLCM.safetensors", "lcm"),
    ],
)
def test_loaders_and_motion_modules_keep_the_picture(comfyui, pictures, loader, motion, sampler):
    video, start = run(
        comfyui, workflow(pictures, STILL, loader=loader, motion=motion, sampler=sampler)
    )
    assert close(video, start)
    free, start = run(
        comfyui,
        workflow(
            pictures,
            {"omega": "free", "tau_end_percent": 100.0},
            loader=loader,
            motion=motion,
            sampler=sampler,
        ),
    )
    assert close(free[0], start[0])


def test_more_frames_than_the_context_keep_the_picture(comfyui, pictures):
    video, start = run(comfyui, workflow(pictures, STILL, frames=12, context=8))
    assert video.shape[0] == 12 and close(video, start)
    free, start = run(
        comfyui,
        workflow(
            pictures,
            {"omega": "free", "tau_end_percent": 100.0},
            frames=12,
            context=8,
            reference_frame=-1,
        ),
    )
    assert close(free[-1], start[-1])


@pytest.mark.parametrize(
    "motion", ["hsxl_temporal_layers_native.safetensors", "mm_sdxl_v10_beta.safetensors"]
)
def test_sdxl_with_hotshot_xl_and_animatediff_sdxl_keeps_the_picture(comfyui, pictures, motion):
    """SDXL: SETUP.md's slim SDXL in a layout ComfyUI detects (Segmind Vega depths) and
    HotShot-XL in its native key names (what ADE recognises); a two-call sampler too."""
    sdxl = {"ckpt": "random-sdxl-slim-vega.safetensors", "motion": motion}
    video, start = run(comfyui, workflow(pictures, STILL, sampler="heun", **sdxl))
    assert close(video, start)
    free, start = run(
        comfyui,
        workflow(pictures, {"omega": "free", "tau_end_percent": 100.0}, reference_frame=-1, **sdxl),
    )
    assert close(free[-1], start[-1])


def test_every_sampler_comfyui_lists_keeps_the_picture(comfyui, pictures):
    """All of KSampler's samplers (GET /object_info), a still window, 3 steps: every frame
    ends on the picture, or the sampler is refused with a message naming it."""
    listed = comfyui.object_info("KSampler")["input"]["required"]["sampler_name"][0]
    assert len(listed) >= 40, listed
    failures = []
    for sampler in listed:
        try:
            video, start = run(comfyui, workflow(pictures, STILL, sampler=sampler, steps=3))
        except PromptFailed as error:
            failures.append(f"{sampler}: refused: {error.message}")
            continue
        if not close(video, start):
            failures.append(f"{sampler}: off by {diff(video, start):.3g}")
    assert failures == [], "\n".join(failures)


def test_every_scheduler_comfyui_lists_keeps_the_picture(comfyui, pictures):
    listed = comfyui.object_info("KSampler")["input"]["required"]["scheduler"][0]
    failures = []
    for scheduler in listed:
        try:
            video, start = run(
                comfyui, workflow(pictures, STILL, sampler="heun", scheduler=scheduler, steps=3)
            )
        except PromptFailed as error:
            failures.append(f"{scheduler}: refused: {error.message}")
            continue
        if not close(video, start):
            failures.append(f"{scheduler}: off by {diff(video, start):.3g}")
    assert failures == [], "\n".join(failures)


def test_a_latent_that_does_not_fit_the_picture_is_refused_and_nothing_stays(comfyui, pictures):
    wf = workflow(pictures, PAPER)
    wf["31"] = {
        "class_type": "RepeatLatentBatch",
        "inputs": {"samples": ["22", 0], "amount": FRAMES + 2},
    }
    wf["40"]["inputs"]["latent_image"] = ["31", 0]
    with pytest.raises(
        PromptFailed, match=r"\(node 30\): picture latent = \(8, 4, 8, 8\) is invalid"
    ):
        run(comfyui, wf)
    before, _ = run(comfyui, workflow(pictures, PAPER))
    after, _ = run(comfyui, workflow(pictures, PAPER))
    assert np.array_equal(before, after)


# ------------------------------------------------------------------------ IP-Adapter beside it
IP_ADAPTER = "ip-adapter_sd15.safetensors"
IP_CLIP_VISION = "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"


def with_ip_adapter(wf: dict, reference: str) -> dict:
    """cubiq/ComfyUI_IPAdapter_plus on the model between ADE's Use Evolved Sampling ("13")
    and the node ("30"): the node's model input is rewired to IPAdapterAdvanced's output."""
    wf["60"] = {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": IP_CLIP_VISION}}
    wf["61"] = {"class_type": "IPAdapterModelLoader", "inputs": {"ipadapter_file": IP_ADAPTER}}
    wf["62"] = {"class_type": "LoadImage", "inputs": {"image": reference}}
    wf["63"] = {
        "class_type": "IPAdapterAdvanced",
        "inputs": {
            "model": wf["30"]["inputs"]["model"],
            "ipadapter": ["61", 0],
            "clip_vision": ["60", 0],
            "image": ["62", 0],
            "weight": 1.0,
            "weight_type": "linear",
            "combine_embeds": "concat",
            "start_at": 0.0,
            "end_at": 1.0,
            "embeds_scaling": "V only",
        },
    }
    wf["30"]["inputs"]["model"] = ["63", 0]
    return wf


def test_ip_adapter_beside_rectification(comfyui, pictures):
    """IP-Adapter (random weights, SETUP.md "IP-Adapter (optional)") on ADE's model before
    the node: a still window still ends every frame on the picture, a free one keeps the
    reference frame exact, and with the node disabled the IP-Adapter does change the video."""
    nodes = ("IPAdapterModelLoader", "IPAdapterAdvanced", "CLIPVisionLoader")
    info = {}
    for node in nodes:
        try:
            info[node] = comfyui.object_info(node)
        except KeyError:
            pytest.skip(f"no {node} node on the server (ComfyUI_IPAdapter_plus, SETUP.md)")
    listed = {
        IP_ADAPTER: info["IPAdapterModelLoader"]["input"]["required"]["ipadapter_file"][0],
        IP_CLIP_VISION: info["CLIPVisionLoader"]["input"]["required"]["clip_name"][0],
    }
    missing = [name for name, names in listed.items() if name not in names]
    if missing:
        pytest.skip(f"not in models/ipadapter or models/clip_vision: {missing} (SETUP.md)")
    y, x = np.meshgrid(np.linspace(0, 1, SIZE), np.linspace(0, 1, SIZE), indexing="ij")
    checks = (np.floor(x * 8) + np.floor(y * 8)) % 2
    reference = comfyui.upload_png(png_bytes(np.stack([x, y, checks], -1)), "nr_live_ipa.png")

    video, start = run(comfyui, with_ip_adapter(workflow(pictures, STILL), reference))
    assert video.shape == (FRAMES, 4, SIZE // 8, SIZE // 8)
    assert close(video, start), diff(video, start)

    free = workflow(pictures, {"omega": "free", "tau_end_percent": 100.0})
    video, start = run(comfyui, with_ip_adapter(free, reference))
    assert close(video[0], start[0]), diff(video[0], start[0])
    assert max(diff(video[f], start[f]) for f in range(1, FRAMES)) > 0.05 * np.abs(start[0]).max()

    with_ipa, _ = run(comfyui, with_ip_adapter(workflow(pictures, STILL, enabled=False), reference))
    without, _ = run(comfyui, workflow(pictures, STILL, enabled=False))
    assert not close(with_ipa, without, 0.05), diff(with_ipa, without)


@pytest.mark.parametrize("node", ["SamplerCustom", "SamplerCustomAdvanced"])
def test_custom_samplers_with_their_own_sigmas_keep_the_picture(comfyui, pictures, node):
    """KSamplerSelect + BasicScheduler (karras) into SamplerCustom / SamplerCustomAdvanced
    (comfy_extras/nodes_custom_sampler.py): τ is over the sigmas they are given."""
    wf = workflow(pictures, STILL)
    ks = wf.pop("40")["inputs"]
    wf["41"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "dpmpp_2m"}}
    wf["42"] = {
        "class_type": "BasicScheduler",
        "inputs": {"model": ks["model"], "scheduler": "karras", "steps": STEPS, "denoise": 1.0},
    }
    if node == "SamplerCustom":
        wf["40"] = {
            "class_type": "SamplerCustom",
            "inputs": {
                "model": ks["model"],
                "add_noise": True,
                "noise_seed": 7,
                "cfg": 7.0,
                "positive": ks["positive"],
                "negative": ks["negative"],
                "sampler": ["41", 0],
                "sigmas": ["42", 0],
                "latent_image": ks["latent_image"],
            },
        }
    else:
        wf["43"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": 7}}
        wf["44"] = {
            "class_type": "CFGGuider",
            "inputs": {
                "model": ks["model"],
                "positive": ks["positive"],
                "negative": ks["negative"],
                "cfg": 7.0,
            },
        }
        wf["40"] = {
            "class_type": "SamplerCustomAdvanced",
            "inputs": {
                "noise": ["43", 0],
                "guider": ["44", 0],
                "sampler": ["41", 0],
                "sigmas": ["42", 0],
                "latent_image": ks["latent_image"],
            },
        }
    video, start = run(comfyui, wf)
    assert close(video, start), diff(video, start)


# ------------------------------------------------------------------------ the examples
EXAMPLES = sorted(f for f in (ROOT / "workflows").glob("*.json") if not f.name.endswith(".ui.json"))
# the examples' model files -> this server's random ones (SETUP.md section 3)
STAND_INS = {
    "v1-5-pruned-emaonly.safetensors": CKPT,
    "sd_xl_base_1.0.safetensors": "random-sdxl-slim-vega.safetensors",
    "hsxl_temporal_layers.f16.safetensors": "hsxl_temporal_layers_native.safetensors",
}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_workflow_validates_runs_and_saves_a_video(comfyui, pictures, path):
    """workflows/*.json as they are, but for the model files (the random ones), the pictures
    (uploaded), the size (64 px), the frames (8; 9 for Wan) and the steps (2): the server
    accepts the prompt, runs it, and its SaveVideo gives an MP4 of the frames. Wan examples
    take the test conditioning node for their text encoder (``wan_on_test_host``)."""
    import json

    wf = json.loads(path.read_text())
    checkpoints = comfyui.object_info("CheckpointLoaderSimple")["input"]["required"]
    motion = comfyui.object_info("ADE_LoadAnimateDiffModel")["input"]["required"]
    listed = set(checkpoints["ckpt_name"][0]) | set(motion["model_name"][0])
    wan = any(node["class_type"] == "UNETLoader" for node in wf.values())
    if wan:  # Wan: the random files and the test conditioning of SETUP.md section 9
        try:
            comfyui.object_info("NRTestWanConditioning")
        except KeyError:
            pytest.skip("no NRTestWanConditioning node on the server (SETUP.md section 9)")
        wf = wan_on_test_host(wf)
        listed |= set(comfyui.models("diffusion_models")) | set(comfyui.models("vae"))
    images = iter(pictures)
    for node in wf.values():
        inputs = node["inputs"]
        for key in ("ckpt_name", "model_name", "unet_name", "vae_name"):
            if key in inputs:
                inputs[key] = STAND_INS.get(inputs[key], inputs[key])
                if inputs[key] not in listed:
                    pytest.skip(f"{inputs[key]} is not on the server (SETUP.md section 3)")
        if node["class_type"] == "LoadImage":
            inputs["image"] = next(images)
        if node["class_type"] == "ImageScale":
            inputs["width"] = inputs["height"] = SIZE
        if node["class_type"] == "NoiseRectification":
            inputs["frames"] = FRAMES + 1 if wan else FRAMES  # Wan: 4k + 1 frames
        if node["class_type"] == "KSampler":
            inputs["steps"] = 2
    comfyui.free()
    entry = comfyui.wait(comfyui.queue(wf))
    save = next(k for k, n in wf.items() if n["class_type"] == "SaveVideo")
    output = entry["outputs"][save]
    assert output.get("animated") == [True], output
    (video,) = output["images"]
    assert video["filename"].endswith(".mp4"), video
    data = comfyui.view(video)
    assert data[4:8] == b"ftyp" and len(data) > 1000, data[:16]
