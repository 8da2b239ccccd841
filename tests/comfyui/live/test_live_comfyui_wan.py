"""ComfyUI's native Wan path in a real ComfyUI, random weights, over HTTP (opt-in), without
the node: the ground the node's Wan tests stand on.

Needs the Wan files and the test-only nodes of tests/comfyui/live/tools/SETUP.md ("Wan 2.1");
skips, naming what is missing, without them. Run with
``COMFYUI_URL=http://127.0.0.1:8188 python -m pytest tests/comfyui/live/test_live_comfyui_wan.py``.
The graph is ``comfyui_client.wan_workflow``: UNETLoader -> ModelSamplingSD3 -> KSampler on
an EmptyHunyuanLatentVideo (9 frames at 32x32: a [1, 16, 3, 4, 4] latent), VAEDecode ->
CreateVideo -> SaveVideo, and SaveLatent for the numbers.
"""

from __future__ import annotations

import time
import urllib.error

import numpy as np
import pytest

from comfyui_client import (
    WAN21_T2V,
    WAN21_VAE,
    WAN22_TI2V_5B,
    WAN22_VAE,
    WAN_NODES,
    ComfyUI,
    model_info,
    wan_workflow,
)

FRAMES, SIZE, STEPS = 9, 32, 4
LATENT = (1, 16, (FRAMES - 1) // 4 + 1, SIZE // 8, SIZE // 8)
NODES = (
    "NRTestWanConditioning",
    "NRTestModelInfo",
    "UNETLoader",
    "VAELoader",
    "ModelSamplingSD3",
    "EmptyHunyuanLatentVideo",
    "ConditioningZeroOut",
    "CreateVideo",
    "SaveVideo",
)
SETUP = "tests/comfyui/live/tools/SETUP.md, section 9 (Wan)"


def missing_files(comfyui: ComfyUI, unet: str, vae: str) -> list[str]:
    listed = {
        "diffusion_models": comfyui.models("diffusion_models"),
        "vae": comfyui.models("vae"),
    }
    return [
        f"models/{folder}/{name}"
        for folder, name in (("diffusion_models", unet), ("vae", vae))
        if name not in listed[folder]
    ]


@pytest.fixture(scope="module")
def wan(comfyui: ComfyUI) -> ComfyUI:
    for node in NODES:
        try:
            comfyui.object_info(node)
        except KeyError:
            how = (
                "link tests/comfyui/live/tools/nr_test_nodes into ComfyUI/custom_nodes and restart"
                if node.startswith("NRTest")
                else "a ComfyUI older than v0.12.1?"
            )
            pytest.skip(f"no {node} node on the server ({how}; {SETUP})")
    missing = missing_files(comfyui, WAN21_T2V, WAN21_VAE)
    if missing:
        pytest.skip(f"not on the server: {missing} (make_random_comfyui_models.py --wan; {SETUP})")
    return comfyui


def sample(comfyui: ComfyUI, **settings) -> tuple[np.ndarray, dict, float]:
    """The sampled latent, the /history entry and the seconds the prompt took."""
    start = time.monotonic()
    entry = comfyui.run_entry(wan_workflow(**settings))
    seconds = time.monotonic() - start
    return comfyui.saved_latents(entry)[WAN_NODES["save_latent"]], entry, seconds


@pytest.mark.parametrize(("sampler", "scheduler"), [("euler", "simple"), ("uni_pc", "simple")])
def test_the_plain_wan_workflow_samples_and_saves_a_video(wan, sampler, scheduler):
    latent, entry, seconds = sample(
        wan,
        sampler_name=sampler,
        scheduler=scheduler,
        steps=STEPS,
        frames=FRAMES,
        width=SIZE,
        height=SIZE,
        seed=11,
    )
    print(f"{sampler}/{scheduler}: {seconds:.1f} s")
    assert latent.shape == LATENT, latent.shape
    assert np.isfinite(latent).all()
    assert latent.std() > 0.05 and not np.array_equal(latent[:, :, 0], latent[:, :, 1])
    output = entry["outputs"][WAN_NODES["save_video"]]
    assert output.get("animated") == [True], output
    (video,) = output["images"]
    assert video["filename"].endswith(".mp4"), video
    data = wan.view(video)
    assert data[4:8] == b"ftyp" and len(data) > 1000, data[:16]


def test_the_same_prompt_twice_is_bit_identical_and_the_seed_matters(wan):
    """After /free each run samples again (ComfyUI would return its cache otherwise): the
    same prompt gives the same bits, so later bit-identity tests mean something."""
    settings = {"sampler_name": "euler", "steps": STEPS, "seed": 3, "decode": False}
    first, _, _ = sample(wan, **settings)
    again, _, _ = sample(wan, **settings)
    assert np.array_equal(first, again), float(np.abs(first - again).max())
    multistep, _, _ = sample(wan, **{**settings, "sampler_name": "uni_pc"})
    multistep_again, _, _ = sample(wan, **{**settings, "sampler_name": "uni_pc"})
    assert np.array_equal(multistep, multistep_again)
    other, _, _ = sample(wan, **{**settings, "seed": 4})
    assert not np.allclose(first, other)
    other_text, _, _ = sample(wan, **{**settings, "text_seed": 1})
    assert not np.array_equal(first, other_text)  # the conditioning reaches the model


def test_the_server_reads_the_file_as_a_wan21_t2v_flow_model(wan):
    """What the server's own objects say (the test node NRTestModelInfo, no sampling), then
    its log (GET /internal/logs) after a sampling run."""
    wan.free()
    own = model_info(wan.run_entry(wan_workflow(shift=None, info=True, decode=False)))
    assert own["model_config"] == "WAN21_T2V", own
    assert own["model"] == "WAN21" and own["model_type"] == "FLOW", own
    assert own["latent_format"] == "Wan21" and own["latent_channels"] == 16, own
    assert own["latent_dimensions"] == 3, own
    assert own["diffusion_model"] == "comfy.ldm.wan.model.WanModel", own
    config = own["unet_config"]
    assert config["image_model"] == "wan2.1" and config["model_type"] == "t2v", config
    assert config["in_dim"] == config["out_dim"] == 16 and config["patch_size"] == [1, 2, 2]
    assert config["num_heads"] == config["dim"] // 128, config
    assert own["sampling_settings"] == {"shift": 8.0}, own
    assert own["model_sampling"][1:] == ["ModelSamplingDiscreteFlow", "CONST"], own
    assert own["shift"] == 8.0 and own["multiplier"] == 1000.0, own
    assert own["sigma_max"] == 1.0, own  # time_snr_shift(8, 1000/1000)
    patched = model_info(wan.run_entry(wan_workflow(shift=5.0, info=True, decode=False)))
    assert patched["model_sampling"][0] == "ModelSamplingAdvanced", patched
    assert patched["shift"] == 5.0 and patched["sigma_max"] == 1.0, patched

    sample(wan, steps=2, seed=5, decode=False)
    try:
        log = wan.logs()
    except urllib.error.HTTPError as error:  # an internal route: may go away
        pytest.skip(f"no /internal/logs ({error})")
    assert "model_type FLOW" in log and "Requested to load WAN21" in log, log[-2000:]


def test_the_models_own_sampling_is_modelsamplingsd3_at_shift_8(wan):
    """Without the test node: UNETLoader's model alone samples bit-identically to the same
    model behind ModelSamplingSD3 at shift 8 (WAN21_T2V's sampling_settings), not at 5."""
    settings = {"steps": 3, "seed": 8, "decode": False}
    own, _, _ = sample(wan, shift=None, **settings)
    eight, _, _ = sample(wan, shift=8.0, **settings)
    five, _, _ = sample(wan, shift=5.0, **settings)
    assert np.array_equal(own, eight)
    assert not np.allclose(own, five)


def test_a_zeroed_negative_and_the_splice_point(wan):
    """negative="zero" (ConditioningZeroOut) samples; a splice that passes MODEL and LATENT
    through two nodes of ComfyUI's own that change nothing gives the same bits as none."""

    def through(wf: dict, model: list, latent: list) -> tuple[list, list]:
        wf["20"] = {"class_type": "ModelSamplingSD3", "inputs": {"model": model, "shift": 8.0}}
        wf["21"] = {
            "class_type": "LatentMultiply",
            "inputs": {"samples": latent, "multiplier": 1.0},
        }
        return ["20", 0], ["21", 0]

    settings = {"steps": 2, "seed": 9, "decode": False}
    zero, _, _ = sample(wan, negative="zero", **settings)
    assert zero.shape == LATENT and np.isfinite(zero).all()
    plain, _, _ = sample(wan, **settings)
    spliced, _, _ = sample(wan, splice=through, **settings)
    assert not np.array_equal(zero, plain)
    assert np.array_equal(plain, spliced)


def test_wan22_ti2v_5b_shaped_model_samples_48_channels(wan):
    """The optional Wan 2.2 files (--wan22): WAN22_T2V, a 48-channel latent at /16 from
    Wan22ImageToVideoLatent, and the full-size Wan 2.2 VAE decodes it."""
    missing = missing_files(wan, WAN22_TI2V_5B, WAN22_VAE)
    if missing:
        pytest.skip(f"not on the server: {missing} (make_random_comfyui_models.py --wan22)")
    settings = {
        "unet": WAN22_TI2V_5B,
        "vae": WAN22_VAE,
        "latent": "Wan22ImageToVideoLatent",
        "width": 64,
        "height": 64,
        "frames": FRAMES,
        "steps": 2,
        "seed": 12,
        "info": True,
    }
    latent, entry, seconds = sample(wan, **settings)
    print(f"wan 2.2 5B-shaped, 64x64, 9 frames, 2 steps: {seconds:.1f} s")
    info = model_info(entry)
    assert info["model_config"] == "WAN22_T2V" and info["model"] == "WAN22", info
    assert info["latent_format"] == "Wan22" and info["latent_channels"] == 48, info
    assert latent.shape == (1, 48, 3, 4, 4), latent.shape
    assert np.isfinite(latent).all() and latent.std() > 0.05
    (video,) = entry["outputs"][WAN_NODES["save_video"]]["images"]
    assert wan.view(video)[4:8] == b"ftyp"
