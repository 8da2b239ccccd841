"""Two anchors (docs/two-anchors.md): both anchor frames exact, one anchor unchanged."""

from __future__ import annotations

import pytest
import torch
from no_float64 import NoFloat64

from bench.tinyvideo.model_io import load_model
from bench.tinyvideo.samplers import sample
from lib_rectify import Rectifier, RectifyError, RectifyParams
from lib_rectify.anchors import BLENDS, anchor_mix, anchor_positions, blend_clean
from lib_rectify.layout import from_frame_rows, to_frame_rows
from lib_rectify.weights import omega_weights

L = 8
OMEGAS = ["paper", "still", "free", 0.3, (1.0, 0.2, 0.7)]


def tensors(layout: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shape = (2 * L, 4, 3, 3) if layout == "frames" else (2, 4, L, 3, 3)
    return [torch.randn(shape, generator=g) for _ in range(3)]


def rectifier(omega, anchors=None, **k) -> Rectifier:
    params = RectifyParams(enabled=True, omega=omega, tau=(0.0, 1.0))
    return Rectifier(params, frames=L, anchors=anchors, **k)


@pytest.mark.parametrize("omega", OMEGAS)
@pytest.mark.parametrize("layout", ["frames", "video"])
def test_one_anchor_is_bit_identical_to_the_paper_path(omega, layout):
    x, clean, eps = tensors(layout)
    outs = []
    for anchors in (None, (0,), [-L]):
        rect = rectifier(omega, anchors, layout=layout)
        rect.capture_pivot_eps(x, clean=clean, alpha_cumprod=0.3)
        outs.append(rect.rectify_eps(eps, step=0, total_steps=4))
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])


@pytest.mark.parametrize("omega", OMEGAS)
@pytest.mark.parametrize("layout", ["frames", "video"])
@pytest.mark.parametrize("pivot", ["initial", "per_step"])
@pytest.mark.parametrize("reference", [0, -1])
def test_both_anchor_frames_get_exactly_their_pivot(omega, layout, pivot, reference):
    x, clean, eps = tensors(layout)
    other = L - 1 if reference == 0 else 0
    rect = Rectifier(
        RectifyParams(enabled=True, omega=omega, tau=(0.0, 1.0), reference_frame=reference),
        frames=L,
        layout=layout,
        pivot=pivot,
        anchors=(reference, other),
    )
    rect.capture_pivot_eps(x, clean=clean, alpha_cumprod=0.3)
    with NoFloat64():
        out = rect.rectify_eps(eps, step=1, total_steps=4, x=x, alpha_cumprod=0.3)
    pivot_rows = (x.float() - 0.3**0.5 * clean) / 0.7**0.5
    rows_out = to_frame_rows(out, layout, L)
    rows_pivot = to_frame_rows(pivot_rows, layout, L)
    for frame in (0, L - 1):
        assert torch.allclose(rows_out[:, frame], rows_pivot[:, frame], atol=1e-5)
    if omega != "still":  # the middle frames really are corrected by a mix, not pinned
        assert not torch.allclose(rows_out[:, 3], rows_pivot[:, 3], atol=1e-3)


@pytest.mark.parametrize("layout", ["frames", "video"])
def test_both_anchors_exact_in_the_denoiser_form(layout):
    x, clean, denoised = tensors(layout)
    rect = rectifier("free", (0, L - 1), layout=layout)
    rect.capture_pivot_denoiser(x, clean=clean, sigma=2.0)
    out = rect.rectify_denoised(denoised, x=x, sigma=2.0, step=0, total_steps=3)
    rows_out, rows_clean = to_frame_rows(out, layout, L), to_frame_rows(clean, layout, L)
    # x = Z + σ·n and ñ = n at an anchor: the denoised result is exactly its clean latent
    for frame in (0, L - 1):
        assert torch.allclose(rows_out[:, frame], rows_clean[:, frame], atol=1e-5)


def test_the_mix_and_the_positions():
    mix = anchor_mix((0, L - 1), L)
    assert torch.allclose(mix.sum(1), torch.ones(L))
    assert mix[0].tolist() == [1.0, 0.0] and mix[-1].tolist() == [0.0, 1.0]
    assert torch.allclose(mix[:, 1], anchor_positions((0, L - 1), L))
    reversed_mix = anchor_mix((L - 1, 0), L)  # reference at the end: its gap weighs there
    assert reversed_mix[-1].tolist() == [1.0, 0.0] and reversed_mix[0].tolist() == [0.0, 1.0]
    assert torch.equal(anchor_mix((3,), L), torch.ones(L, 1))


def test_paper_omega_with_two_anchors_is_symmetric():
    omega = omega_weights("paper", L, 0, (0, L - 1))
    assert omega[0] == 1.0 and omega[-1] == 1.0
    assert torch.equal(omega, omega.flip(0))
    assert omega[L // 2] == 0.5 and omega[L // 2 - 1] == 0.5
    assert torch.equal(omega_weights("paper", L, 0, (0,)), omega_weights("paper", L, 0))


@pytest.mark.parametrize("blend", list(BLENDS))
def test_blends_are_exact_at_the_pictures(blend):
    g = torch.Generator().manual_seed(3)
    first, second = torch.randn(2, 1, 12, generator=g), torch.randn(2, 1, 12, generator=g)
    out = blend_clean(first, second, anchor_positions((0, L - 1), L), blend)
    assert out.shape == (2, L, 12)
    assert torch.equal(out[:, 0], first[:, 0]) and torch.equal(out[:, -1], second[:, 0])
    if blend == "linear":
        assert torch.allclose(out[:, 2], first[:, 0] + 2 / 7 * (second[:, 0] - first[:, 0]))


@pytest.mark.parametrize(
    ("anchors", "allowed"),
    [
        ((1, 7), "reference frame 0 first"),
        ((0, 3, 7), "at most one"),
        ((0, -8), "at most one"),
        ((0, 8), "use 0 to 7"),
    ],
)
def test_bad_anchors_are_refused(anchors, allowed):
    with pytest.raises(RectifyError, match=allowed):
        rectifier("paper", anchors)


@pytest.fixture(scope="module")
def model():
    return load_model()[0]


@pytest.mark.parametrize("sampler", ["ddim", "euler"])
@pytest.mark.parametrize("omega", ["still", "free", "paper"])
def test_a_video_starts_on_one_picture_and_ends_on_another(model, sampler, omega):
    """The small model, τ 0-100 %: both end frames are their pictures; the middle moves."""
    g = torch.Generator().manual_seed(5)
    first, last = (
        torch.rand(2, 3, 16, 16, generator=g) * 2 - 1,
        torch.rand(2, 3, 16, 16, generator=g) * 2 - 1,
    )
    frames = 8
    like = first[:, :, None].expand(-1, -1, frames, -1, -1)
    clean = from_frame_rows(
        blend_clean(
            to_frame_rows(first[:, :, None], "video", 1),
            to_frame_rows(last[:, :, None], "video", 1),
            anchor_positions((0, frames - 1), frames),
            "linear",
        ),
        like,
        "video",
    )
    noise = torch.randn(like.shape, generator=g)
    rect = Rectifier(
        RectifyParams(enabled=True, omega=omega, tau=(0.0, 1.0)),
        frames=frames,
        anchors=(0, frames - 1),
    )
    with torch.no_grad():
        video = sample(
            model, noise, reference=first, clean=clean, sampler=sampler, steps=8, rectifier=rect
        )
    assert float((video[:, :, 0] - first).abs().max()) < 1e-4
    assert float((video[:, :, -1] - last).abs().max()) < 1e-4
    middle = float((video[:, :, 1:-1] - clean[:, :, 1:-1]).abs().max())
    assert middle < 1e-4 if omega == "still" else middle > 1e-2


def test_end_anchored_clean_puts_each_picture_at_its_end():
    from lib_rectify.anchors import end_anchored_clean

    g = torch.Generator().manual_seed(4)
    picture, end = torch.randn(2, 4, 3, 3, generator=g), torch.randn(2, 4, 3, 3, generator=g)
    clean, anchors = end_anchored_clean(picture, end, L, 0)
    assert clean.shape == (2, L, 4, 3, 3) and anchors == (0, L - 1)
    assert torch.equal(clean[:, 0], picture) and torch.equal(clean[:, -1], end)
    clean, anchors = end_anchored_clean(picture, end, L, -1)
    assert anchors == (L - 1, 0)
    assert torch.equal(clean[:, -1], picture) and torch.equal(clean[:, 0], end)
    with pytest.raises(RectifyError, match="0 or -1"):
        end_anchored_clean(picture, end, L, 3)
    with pytest.raises(RectifyError, match="latent shape"):
        end_anchored_clean(picture, end[:1], L, 0)
