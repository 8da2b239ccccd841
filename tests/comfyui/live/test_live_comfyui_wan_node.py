"""The node on Wan in a real ComfyUI, random weights, over HTTP (opt-in).

Needs the Wan files and the test-only nodes of tests/comfyui/live/tools/SETUP.md ("Wan");
skips, naming what is missing, without them. Run with
``COMFYUI_URL=http://127.0.0.1:8188 python -m pytest tests/comfyui/live/test_live_comfyui_wan_node.py``.
The graph is ComfyUI's native Wan text-to-video one (``comfyui_client.wan_workflow``) with
the node spliced in before the KSampler: Load Image -> Image Scale -> the node's ``image``,
the Wan VAE into its ``vae``, its MODEL and LATENT into the KSampler. Latents are compared
as SaveLatent wrote them: the sampled video (node "11") and the node's own LATENT, the
still video's latent (node "24"). Settings are chosen so that a bug would show: 9 frames
(3 latent frames, the first encoded apart from the others by the causal VAE), windows whose
edges fall inside the run, two-call samplers, the last frame as reference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_live_comfyui_wan import NODES, SETUP, missing_files

from comfyui_client import (
    WAN21_T2V,
    WAN21_VAE,
    WAN22_TI2V_5B,
    WAN22_VAE,
    WAN_NODES,
    ComfyUI,
    PromptFailed,
    PromptRefused,
    png_bytes,
    wan_workflow,
)

ROOT = Path(__file__).resolve().parents[3]
FRAMES, SIZE, STEPS = 9, 32, 4
LATENT_FRAMES = (FRAMES - 1) // 4 + 1
STILL = {"omega": "still", "tau_start_percent": 0.0, "tau_end_percent": 100.0}
FREE = {"omega": "free", "tau_start_percent": 0.0, "tau_end_percent": 100.0}
START = "24"  # SaveLatent of the node's LATENT
NODE = "23"


@pytest.fixture(scope="module")
def wan(comfyui: ComfyUI) -> ComfyUI:
    for node in NODES:
        try:
            comfyui.object_info(node)
        except KeyError:
            pytest.skip(f"no {node} node on the server ({SETUP})")
    missing = missing_files(comfyui, WAN21_T2V, WAN21_VAE)
    if missing:
        pytest.skip(f"not on the server: {missing} (make_random_comfyui_models.py --wan; {SETUP})")
    return comfyui


@pytest.fixture(scope="module")
def pictures(wan: ComfyUI) -> tuple[str, str]:
    from PIL import Image

    picture = (
        Image.open(ROOT / "bench" / "assets" / "sample.png").convert("RGB").resize((SIZE, SIZE))
    )
    pixels = np.asarray(picture, dtype=np.float32) / 255
    first = wan.upload_png(png_bytes(pixels), "nr_live_wan_picture.png")
    last = wan.upload_png(png_bytes(pixels[::-1, ::-1] * 0.8 + 0.1), "nr_live_wan_end.png")
    return first, last


def _scaled(wf: dict, node_id: str, picture: str) -> list:
    wf[node_id] = {"class_type": "LoadImage", "inputs": {"image": picture}}
    wf[str(int(node_id) + 1)] = {
        "class_type": "ImageScale",
        "inputs": {
            "image": [node_id, 0],
            "upscale_method": "bilinear",
            "width": SIZE,
            "height": SIZE,
            "crop": "disabled",
        },
    }
    return [str(int(node_id) + 1), 0]


def node_splice(pictures, settings: dict | None, *, end: bool = False, **node_inputs):
    """The node between the model and the sampler; ``settings`` None: the workflow without
    it, sampling the still video a user would make by hand (Repeat Image Batch of the
    picture, VAE Encode)."""

    def splice(wf: dict, model: list, latent: list) -> tuple[list, list]:
        vae = [WAN_NODES["vae"], 0]
        image = _scaled(wf, "20", pictures[0])
        if settings is None:
            wf["26"] = {
                "class_type": "RepeatImageBatch",
                "inputs": {"image": image, "amount": FRAMES},
            }
            wf["27"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["26", 0], "vae": vae}}
            out = (model, ["27", 0])
        else:
            inputs = {
                "model": model,
                "image": image,
                "vae": vae,
                "frames": FRAMES,
                "omega": "paper",
                "tau_start_percent": 0.0,
                "tau_end_percent": 60.0,
                "reference_frame": 0,
                "enabled": True,
                **settings,
                **node_inputs,
            }
            if end:
                inputs["end_image"] = _scaled(wf, "28", pictures[1])
            wf[NODE] = {"class_type": "NoiseRectification", "inputs": inputs}
            out = ([NODE, 0], [NODE, 1])
        wf[START] = {
            "class_type": "SaveLatent",
            "inputs": {"samples": out[1], "filename_prefix": "nr_live/wan_start"},
        }
        return out

    return splice


def run(
    comfyui: ComfyUI,
    pictures,
    settings: dict | None,
    *,
    end: bool = False,
    advanced: tuple[int, int, str] | None = None,
    node_inputs: dict | None = None,
    **workflow,
) -> tuple[np.ndarray, np.ndarray]:
    workflow.setdefault("steps", STEPS)
    workflow.setdefault("decode", False)
    workflow.setdefault("sampler_name", "euler")
    wf = wan_workflow(
        splice=node_splice(pictures, settings, end=end, **(node_inputs or {})), **workflow
    )
    if advanced:
        start, stop, leftover = advanced
        inputs = dict(wf[WAN_NODES["sampler"]]["inputs"])
        inputs.pop("denoise")
        inputs["noise_seed"] = inputs.pop("seed")
        inputs.update(
            add_noise="enable",
            start_at_step=start,
            end_at_step=stop,
            return_with_leftover_noise=leftover,
        )
        wf[WAN_NODES["sampler"]] = {"class_type": "KSamplerAdvanced", "inputs": inputs}
    latents = comfyui.run(wf)
    return latents[WAN_NODES["save_latent"]], latents[START]


def close(a: np.ndarray, b: np.ndarray, rel: float = 1e-3) -> bool:
    return bool(np.abs(a - b).max() <= rel * np.abs(b).max())


def diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max())


def samplers(comfyui: ComfyUI) -> list[str]:
    return list(comfyui.object_info("KSampler")["input"]["required"]["sampler_name"][0])


def schedulers(comfyui: ComfyUI) -> list[str]:
    return list(comfyui.object_info("KSampler")["input"]["required"]["scheduler"][0])


# ------------------------------------------------------------------------ the picture
def test_the_nodes_latent_is_the_still_video_the_vae_encodes(wan, pictures):
    _, start = run(wan, pictures, STILL)
    _, by_hand = run(wan, pictures, None)
    assert start.shape == (1, 16, LATENT_FRAMES, SIZE // 8, SIZE // 8)
    assert np.array_equal(start, by_hand)
    assert diff(start[:, :, 0], start[:, :, 1]) > 1e-3  # causal: frame 0 is encoded apart


def test_a_still_window_ends_on_the_still_video_with_every_sampler(wan, pictures):
    """Every sampler ComfyUI lists, Wan's default simple schedule, 4 steps from σ_start."""
    failed = {}
    for sampler in samplers(wan):
        video, start = run(wan, pictures, STILL, sampler_name=sampler)
        if not close(video, start):
            failed[sampler] = diff(video, start)
    assert not failed, failed


def test_a_still_window_ends_on_the_still_video_with_every_scheduler(wan, pictures):
    failed = {}
    for scheduler in schedulers(wan):
        for sampler in ("euler", "uni_pc"):
            video, start = run(wan, pictures, STILL, sampler_name=sampler, scheduler=scheduler)
            if not close(video, start):
                failed[(sampler, scheduler)] = diff(video, start)
    assert not failed, failed


@pytest.mark.parametrize("sampler", ["euler", "uni_pc", "dpmpp_2m"])
def test_without_sigma_start_the_picture_is_lost(wan, pictures, sampler):
    """σ_start = 1 is ComfyUI's own start, the noise alone: even a still window cannot bring
    the picture back (docs/flow-matching.md); without the node neither."""
    video, start = run(wan, pictures, STILL, node_inputs={"sigma_start": 1.0}, sampler_name=sampler)
    assert not close(video, start, 0.05), diff(video, start)
    off, _ = run(wan, pictures, None, sampler_name=sampler)
    assert not close(off, start, 0.05)


@pytest.mark.parametrize("reference", [0, -1])
@pytest.mark.parametrize("sampler", ["uni_pc", "euler_ancestral"])
def test_free_omega_keeps_the_reference_latent_frame_exact(wan, pictures, reference, sampler):
    video, start = run(
        wan,
        pictures,
        FREE,
        node_inputs={"reference_frame": reference},
        sampler_name=sampler,
    )
    assert close(video[:, :, reference], start[:, :, reference]), diff(video, start)
    others = [f for f in range(LATENT_FRAMES) if f != reference % LATENT_FRAMES]
    assert max(diff(video[:, :, f], start[:, :, f]) for f in others) > 0.05 * np.abs(start).max()


@pytest.mark.parametrize("sampler", ["uni_pc", "euler"])
def test_two_anchors_hold_both_ends(wan, pictures, sampler):
    video, start = run(wan, pictures, FREE, end=True, sampler_name=sampler)
    assert close(video[:, :, 0], start[:, :, 0]) and close(video[:, :, -1], start[:, :, -1])
    assert not close(start[:, :, 0], start[:, :, -1], 0.05)  # two different pictures


# ----------------------------------------------------------------- nothing changed
@pytest.mark.parametrize(
    "settings", [{"enabled": False}, {"tau_start_percent": 40.0, "tau_end_percent": 40.0}]
)
@pytest.mark.parametrize("sampler", ["uni_pc", "euler"])
def test_off_or_an_empty_window_is_bit_identical_to_the_workflow_without_the_node(
    wan, pictures, settings, sampler
):
    with_node, start = run(wan, pictures, settings, sampler_name=sampler)
    without, by_hand = run(wan, pictures, None, sampler_name=sampler)
    assert np.array_equal(start, by_hand)
    assert np.array_equal(with_node, without)


# ------------------------------------------------------------------------ the steps
@pytest.mark.parametrize("sampler", ["uni_pc", "heun", "dpmpp_2m"])
def test_a_partial_window_rectifies_exactly_its_steps(wan, pictures, sampler):
    """4 steps: τ 0-50 % and 0-45 % both rectify steps 0-1 (bit-identical); 0-60 % adds step 2."""
    a, _ = run(wan, pictures, {"tau_end_percent": 50.0}, sampler_name=sampler)
    b, _ = run(wan, pictures, {"tau_end_percent": 45.0}, sampler_name=sampler)
    c, _ = run(wan, pictures, {"tau_end_percent": 60.0}, sampler_name=sampler)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_ksampler_advanced_window_is_a_fraction_of_the_steps_it_runs(wan, pictures):
    """Steps 2-6 of 8 start below σ = 1 (the schedule is kept) and sample 4 steps: a still
    window over them ends on the still video, and τ 0-50 % of those 4 equals 0-45 %, not 0-60 %."""
    advanced = (2, 6, "disable")
    video, start = run(wan, pictures, STILL, steps=8, advanced=advanced)
    assert close(video, start), diff(video, start)
    a, _ = run(wan, pictures, {"tau_end_percent": 50.0}, steps=8, advanced=advanced)
    b, _ = run(wan, pictures, {"tau_end_percent": 45.0}, steps=8, advanced=advanced)
    c, _ = run(wan, pictures, {"tau_end_percent": 60.0}, steps=8, advanced=advanced)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


# -------------------------------------------------------------------------- bad input
def test_bad_inputs_are_refused_naming_the_field_and_the_next_prompt_is_as_before(wan, pictures):
    paper = {"omega": "paper"}
    before, _ = run(wan, pictures, paper)
    with pytest.raises(PromptRefused, match=r"sigma_start = 0.0 is invalid"):
        wan.queue(wan_workflow(splice=node_splice(pictures, {"sigma_start": 0.0})))
    after, _ = run(wan, pictures, paper)
    assert np.array_equal(before, after)

    with pytest.raises(PromptFailed, match=r"\(node 23\): last σ"):
        run(wan, pictures, paper, steps=8, advanced=(0, 5, "enable"))
    after, _ = run(wan, pictures, paper)
    assert np.array_equal(before, after)

    def one_picture_latent(wf: dict, model: list, latent: list) -> tuple[list, list]:
        image = _scaled(wf, "20", pictures[0])
        vae = [WAN_NODES["vae"], 0]
        wf["27"] = {"class_type": "VAEEncode", "inputs": {"pixels": image, "vae": vae}}
        wf[NODE] = {
            "class_type": "NoiseRectification",
            "inputs": {"model": model, "picture": ["27", 0], "frames": FRAMES, **STILL},
        }
        wf[NODE]["inputs"].update(reference_frame=0, enabled=True)
        return [NODE, 0], [NODE, 1]

    with pytest.raises(
        PromptFailed, match=r"\(node 23\): picture = \(1, 16, 1, 4, 4\) is invalid.*image and vae"
    ):
        wan.run(wan_workflow(splice=one_picture_latent, steps=STEPS, decode=False))
    after, _ = run(wan, pictures, paper)
    assert np.array_equal(before, after)


def test_a_vae_of_another_model_is_refused_naming_the_channels(wan, pictures):
    if WAN22_VAE not in wan.models("vae"):
        pytest.skip(f"{WAN22_VAE} is not on the server ({SETUP})")
    wf = wan_workflow(splice=node_splice(pictures, STILL), steps=STEPS, decode=False)
    wf[WAN_NODES["vae"]]["inputs"]["vae_name"] = WAN22_VAE
    with pytest.raises(PromptFailed, match=r"\(node 23\): image channels = 48 is invalid.*16"):
        wan.run(wf)


# ------------------------------------------------------------------- Wan 2.2 TI2V-5B
@pytest.mark.parametrize("sampler", ["uni_pc", "euler"])
def test_wan22_ti2v_5b_still_window_and_free_reference(wan, pictures, sampler):
    if missing_files(wan, WAN22_TI2V_5B, WAN22_VAE):
        pytest.skip(f"no Wan 2.2 5B files on the server (make_random_comfyui_models.py; {SETUP})")
    five_b = {
        "unet": WAN22_TI2V_5B,
        "vae": WAN22_VAE,
        "latent": "Wan22ImageToVideoLatent",
        "sampler_name": sampler,
    }
    video, start = run(wan, pictures, STILL, **five_b)
    assert start.shape[:3] == (1, 48, LATENT_FRAMES)
    assert close(video, start), diff(video, start)
    video, start = run(wan, pictures, FREE, **five_b)
    assert close(video[:, :, 0], start[:, :, 0])
    assert diff(video[:, :, -1], start[:, :, -1]) > 0.05 * np.abs(start).max()
