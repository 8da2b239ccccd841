"""The diffusers path against bench/tinyvideo's reference sampler on the shipped small model.

Both rectify with the paper's defaults (ω ``paper``, τ 0-60 %) from the same picture and
noise: one through a diffusers scheduler and the adapter's hook, one through the
benchmark's own DDIM / Euler loop calling the core directly. The schedules are the same
("trailing" timesteps, ᾱ ending at 1), so the videos agree to float32 precision:
max |difference| < 1e-4 on pixels in [-1, 1] (measured: 1.7e-6 with DDIM, 3.0e-6 with
Euler).
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers")

import tiny_diffusers as td

from bench.tinyvideo.data import held_out_references
from bench.tinyvideo.model_io import load_model
from bench.tinyvideo.samplers import sample
from lib_rectify import Rectifier, RectifyParams
from lib_rectify_diffusers import image_to_video

FRAMES, STEPS = 8, 10
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def model():
    return load_model()[0]


@pytest.mark.parametrize(
    ("sampler", "scheduler"), [("ddim", "DDIMScheduler"), ("euler", "EulerDiscreteScheduler")]
)
def test_diffusers_path_matches_the_reference_sampler(model, sampler, scheduler):
    params = RectifyParams(enabled=True)  # the paper's defaults
    _, references = held_out_references(2)
    noise = torch.randn((2, 3, FRAMES, 16, 16), generator=torch.Generator().manual_seed(11))
    expected = sample(
        model,
        noise,
        reference=references,
        sampler=sampler,
        steps=STEPS,
        rectifier=Rectifier(params, frames=FRAMES, layout="frames"),
        final_alpha_cumprod=1.0,
    )
    config = {"timestep_spacing": "trailing"}
    if scheduler == "DDIMScheduler":
        config.update(set_alpha_to_one=True, steps_offset=0)
    pipe = td.TinyVideoPipeline(model, td.scheduler(scheduler, **config))
    videos = []
    for i in range(2):
        (video,) = image_to_video(
            pipe,
            params=params,
            reference_latent=references[i : i + 1],
            noise=noise[i : i + 1],
            num_frames=FRAMES,
            num_inference_steps=STEPS,
        )
        videos.append(video)
        assert pipe.noise_rectification["rectified_steps"] == list(range(6))
    difference = float((torch.cat(videos) - expected).abs().max())
    assert difference < TOLERANCE, difference
    # and the rectification matters at this tolerance: without it the video differs
    (plain,) = image_to_video(
        pipe,
        params={"enabled": False},
        reference_latent=references[:1],
        noise=noise[:1],
        num_frames=FRAMES,
        num_inference_steps=STEPS,
    )
    assert float((plain - expected[:1]).abs().max()) > 100 * TOLERANCE
