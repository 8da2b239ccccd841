"""Start on one picture, end on another, through the real script module and the fake host.

The end picture comes from AnimateDiff's own ``last_frame`` or from our ``end_picture``;
the script's encoder (the WebUI's VAE path, exercised in the live suite) is replaced by
a fake that maps a picture name to a latent. Every sampler family, both windows that
matter (still and free over all steps): both end frames exact; refusals name the field.
"""

from __future__ import annotations

import pytest
import torch

import fake_host as host

SCRIPT = host.install()
from lib_rectify import RectifyError  # noqa: E402
from lib_rectify_webui import job  # noqa: E402

Script = SCRIPT.NoiseRectificationScript
FRAMES = 8
ENDS = {"sunset": 7, "harbour": 8}  # picture name -> seed of its latent
ENCODED: list[str] = []


def end_latent(p, picture):
    g = torch.Generator().manual_seed(ENDS[picture])
    return torch.randn(1, 4, p.size, p.size, generator=g)


def fake_encode(p, picture):
    ENCODED.append(picture)
    return end_latent(p, picture)


@pytest.fixture(autouse=True)
def _fresh_host(monkeypatch):
    host.reset_host()
    monkeypatch.setattr(SCRIPT, "_encode_picture", fake_encode)
    ENCODED.clear()
    yield


def run(rect, seed=0, **kwargs):
    torch.manual_seed(seed)
    p = host.make_job(Script, [rect], frames=FRAMES, **kwargs)
    processed = host.run_job(p)
    (video,) = processed.samples  # one batch: [frames, C, h, w]
    return p, processed, video


@pytest.mark.parametrize("sampler", ["Euler", "DPM++ 2M", "DDIM", "UniPC", "Euler a", "LCM"])
@pytest.mark.parametrize("omega", ["still", "free"])
@pytest.mark.parametrize("source", ["animatediff", "ours"])
def test_both_ends_are_their_pictures(sampler, omega, source):
    rect = {"enabled": True, "omega": omega, "tau": [0.0, 1.0]}
    ad = {}
    if source == "animatediff":
        ad["last_frame"] = "sunset"
    else:
        rect["end_picture"] = "sunset"
    p, processed, video = run(rect, ad=ad, sampler=sampler)
    end = end_latent(p, "sunset")[0]
    assert torch.allclose(video[0], p.first_encoding[0], atol=1e-4)
    assert torch.allclose(video[-1], end, atol=1e-4)
    middle = video[1:-1]
    blend = torch.lerp(
        p.first_encoding, end[None], torch.linspace(0, 1, FRAMES)[1:-1, None, None, None]
    )
    if omega == "still":  # every frame on its blend of the two pictures
        assert torch.allclose(middle, blend, atol=1e-4)
    else:
        assert float((middle - blend).abs().max()) > 1e-2
    text = processed.extra_generation_params
    assert text["NR end anchor"] == "True"
    assert text["NR end picture"] == (
        job.END_FROM_ANIMATEDIFF if source == "animatediff" else job.END_FROM_OURS
    )
    assert "blended" in text["NR init"]
    assert ENCODED == ["sunset"]  # encoded once per job


def test_our_end_picture_goes_to_the_other_end_when_the_reference_is_last():
    rect = {"enabled": True, "omega": "free", "tau": [0.0, 1.0], "reference_frame": -1}
    p, _, video = run({**rect, "end_picture": "harbour"})
    assert torch.allclose(video[-1], p.first_encoding[0], atol=1e-4)
    assert torch.allclose(video[0], end_latent(p, "harbour")[0], atol=1e-4)


def test_one_picture_is_unchanged_by_the_option():
    rect = {"enabled": True, "omega": "paper", "tau": [0.0, 0.6]}
    _, on, video_on = run({**rect, "end_anchor": True}, seed=3)
    _, _, video_off = run({**rect, "end_anchor": False}, seed=3)
    assert torch.equal(video_on, video_off)
    assert "NR end picture" not in on.extra_generation_params
    assert ENCODED == []


def test_end_anchor_off_ignores_our_end_picture():
    rect = {"enabled": True, "omega": "still", "tau": [0.0, 1.0], "end_anchor": False}
    p, _, video = run({**rect, "end_picture": "sunset"})
    assert torch.allclose(video, p.first_encoding.expand(FRAMES, -1, -1, -1), atol=1e-4)
    assert ENCODED == []


@pytest.mark.parametrize(
    ("rect", "ad", "field", "fragment"),
    [
        ({"end_anchor": False}, {"last_frame": "sunset"}, "end_anchor", "true to end on"),
        ({"end_picture": "harbour"}, {"last_frame": "sunset"}, "end picture", "not both"),
        (
            {"reference_frame": -1},
            {"last_frame": "sunset"},
            "reference_frame",
            "0 with AnimateDiff",
        ),
        ({"reference_frame": 3, "end_picture": "harbour"}, {}, "reference_frame", "0 or -1"),
    ],
)
def test_refusals_name_the_field_and_leave_the_host_clean(rect, ad, field, fragment):
    with pytest.raises(RectifyError) as error:
        run({"enabled": True, "omega": "still", "tau": [0.0, 1.0], **rect}, ad=ad)
    assert error.value.field == field and fragment in str(error.value)
    assert not host.AnimateDiffMM.mm_injected
