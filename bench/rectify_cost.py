"""Cost of one rectification next to one UNet layer, measured in the same run.

    python -m bench.rectify_cost [--repeats 30] [--threads N]

Shapes are SD1.5 video latents (16 frames × 4 × 64 × 64). The reference is a single
3×3 convolution 320→320 over the same 16 frames at 64×64 — one of the UNet's many
layers. Target: one rectification costs under 5 % of that one layer.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lib_rectify import Rectifier, RectifyParams

FRAMES, CHANNELS, SIZE = 16, 4, 64


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(dtype: torch.dtype, repeats: int) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    shape = (FRAMES, CHANNELS, SIZE, SIZE)
    clean = torch.randn(shape, generator=g).to(dtype)
    noisy = (clean.float() + 14.6 * torch.randn(shape, generator=g)).to(dtype)
    denoised = torch.randn(shape, generator=g).to(dtype)
    rect = Rectifier(RectifyParams(enabled=True, omega="paper", tau=(0.0, 1.0)), frames=FRAMES)
    rect.capture_pivot_denoiser(noisy, clean=clean, sigma=14.6)
    state_bytes = sum(
        t.numel() * t.element_size() for t in vars(rect).values() if isinstance(t, torch.Tensor)
    )
    latent_bytes = clean.numel() * clean.element_size()

    def rectify() -> None:
        rect.rectify_denoised(denoised, x=noisy, sigma=7.3, step=0, total_steps=2)

    conv = torch.nn.Conv2d(320, 320, 3, padding=1).to(torch.float32)
    features = torch.randn(FRAMES, 320, SIZE, SIZE, generator=g)
    conv_dtype = dtype
    try:
        conv_test = conv.to(dtype)
        with torch.no_grad():
            conv_test(features[:1].to(dtype))
        conv, features = conv_test, features.to(dtype)
    except RuntimeError:  # some CPU builds have no half-precision convolution
        conv_dtype = torch.float32

    def layer() -> None:
        with torch.no_grad():
            conv(features)

    with torch.no_grad():
        t_rect = _median_seconds(rectify, repeats)
        t_conv = _median_seconds(layer, max(3, repeats // 5))
    return {
        "rectify_ms": t_rect * 1e3,
        "conv_ms": t_conv * 1e3,
        "ratio": t_rect / t_conv,
        "state_latents": state_bytes / latent_bytes,
        "state_mib": state_bytes / 2**20,
        "conv_dtype": str(conv_dtype).replace("torch.", ""),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads (0 = torch's default)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, latent {FRAMES}x{CHANNELS}x{SIZE}x{SIZE}"
    )
    print(
        "| dtype | one rectification (ms) | one 3x3 conv 320→320 (ms) | ratio | target | state (latent-sizes) | state (MiB) |"
    )
    print("|---|---|---|---|---|---|---|")
    for dtype in (torch.float32, torch.float16):
        r = measure(dtype, args.repeats)
        verdict = "met" if r["ratio"] < 0.05 else "MISSED"
        name = str(dtype).replace("torch.", "")
        conv_note = "" if r["conv_dtype"] == name else f" ({r['conv_dtype']})"
        print(
            f"| {name} | {r['rectify_ms']:.2f} | {r['conv_ms']:.1f}{conv_note} | {100 * r['ratio']:.2f} % "
            f"| < 5 %: {verdict} | {r['state_latents']:.2f} | {r['state_mib']:.2f} |"
        )


if __name__ == "__main__":
    main()
