from __future__ import annotations

import pytest
import torch

from lib_rectify import (
    RectifyError,
    omega_weights,
    resolve_reference_frame,
    step_in_window,
    window_steps,
)


def test_paper_preset_matches_the_official_curve_for_16_frames():
    expected = torch.cat([torch.linspace(1.0, 0.5, 8), torch.full((8,), 0.5)])
    assert torch.allclose(omega_weights("paper", 16), expected)


@pytest.mark.parametrize("frames", range(1, 34))
def test_paper_preset_is_defined_for_every_length(frames):
    w = omega_weights("paper", frames)
    assert w.shape == (frames,)
    assert w[0] == 1.0
    assert torch.all(w[1:] <= w[:-1])  # non-increasing away from the reference
    assert torch.all((w >= 0.5) & (w <= 1.0))
    if frames >= 3:
        assert w[-1] == 0.5


def test_paper_preset_follows_the_reference_frame():
    assert torch.equal(omega_weights("paper", 9, -1), omega_weights("paper", 9, 0).flip(0))
    middle = omega_weights("paper", 9, 4)
    assert middle[4] == 1.0 and torch.equal(middle[:4], middle[5:].flip(0))


def test_still_free_and_number():
    assert torch.equal(omega_weights("still", 5), torch.zeros(5))
    assert torch.equal(omega_weights("free", 5), torch.ones(5))
    assert torch.equal(omega_weights(0.25, 3), torch.full((3,), 0.25))


def test_lists_are_resampled_linearly_to_the_video_length():
    assert torch.allclose(omega_weights((1.0, 0.0), 5), torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    assert torch.allclose(
        omega_weights((0.0, 1.0, 0.0), 5), torch.tensor([0.0, 0.5, 1.0, 0.5, 0.0])
    )
    assert torch.equal(omega_weights((0.3,), 4), torch.full((4,), 0.3))
    long = tuple(i / 31 for i in range(32))
    assert torch.allclose(omega_weights(long, 4), torch.tensor([0.0, 1 / 3, 2 / 3, 1.0]))


def test_reference_frame_bounds():
    assert resolve_reference_frame(-1, 8) == 7
    assert resolve_reference_frame(-8, 8) == 0
    with pytest.raises(RectifyError, match=r"reference_frame = 8 .*8 frames"):
        resolve_reference_frame(8, 8)
    with pytest.raises(RectifyError):
        resolve_reference_frame(-9, 8)


@pytest.mark.parametrize(
    ("total", "tau", "expected"),
    [
        (10, (0.0, 0.6), [0, 1, 2, 3, 4, 5]),
        (10, (0.0, 0.7), [0, 1, 2, 3, 4, 5, 6]),  # 10 * 0.7 is 7.000…1 in floats
        (10, (0.3, 0.7), [3, 4, 5, 6]),
        (5, (0.0, 0.6), [0, 1, 2]),
        (4, (0.0, 0.6), [0, 1, 2]),  # 2.4 → steps 0, 1, 2
        (3, (0.0, 0.0), []),
        (3, (0.5, 0.5), []),
        (7, (0.0, 1.0), list(range(7))),
        (1, (0.0, 0.01), [0]),
        (100, (0.29, 0.57), list(range(29, 57))),
    ],
)
def test_window_is_exact(total, tau, expected):
    assert window_steps(total, tau) == expected


def test_window_outside_the_steps_is_not_rectified():
    assert not step_in_window(-1, 10, (0.0, 1.0))
    assert not step_in_window(10, 10, (0.0, 1.0))
    with pytest.raises(RectifyError, match="total_steps"):
        step_in_window(0, 0, (0.0, 1.0))
