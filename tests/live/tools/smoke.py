#!/usr/bin/env python3
"""Smoke test for a live WebUI set up as in SETUP.md: one img2img request with AnimateDiff on.

Standard library only (any Python 3.8+; the WebUI's venv is not needed).  It makes its
own init image (a hand-written 64x64 gradient PNG), POSTs it to /sdapi/v1/img2img with
AnimateDiff enabled (8 frames, Euler, 6 steps, denoising 1.0 by default), and checks that
one PNG per frame comes back at the requested size and that the frames are not all flat
(a flat frame usually means NaN/black output).  Prints the timing; exits 1 on failure.

    python3 tests/live/tools/smoke.py                       # http://127.0.0.1:7861
    python3 tests/live/tools/smoke.py --url http://127.0.0.1:7862 --repeat 2

The first request after a start takes longer: AnimateDiff loads and hashes the motion
module then.
"""

import argparse
import base64
import json
import struct
import sys
import time
import urllib.error
import urllib.request
import zlib


def make_png(width, height):
    """An 8-bit RGB PNG with a smooth gradient, written by hand."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type: None
        for x in range(width):
            rows += bytes((x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), 128))

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + chunk(b"IEND", b"")
    )


def read_png(data):
    """Decode an 8-bit, non-interlaced grey/RGB/RGBA PNG. Returns (width, height, pixel bytes)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, ihdr = 8, bytearray(), None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, ctype, _, _, interlace = ihdr
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(ctype)
    if depth != 8 or channels is None or interlace:
        raise ValueError(
            f"unsupported PNG (depth {depth}, colour type {ctype}, interlace {interlace})"
        )
    raw, stride, bpp = zlib.decompress(bytes(idat)), width * channels, channels
    out, prev = bytearray(), bytearray(stride)
    for y in range(height):
        f, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out += line
        prev = line
    return width, height, bytes(out)


def post_json(url, payload, timeout):
    req = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    # A local server: never go through a proxy from the environment.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=timeout) as resp:
        return json.load(resp)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--url", default="http://127.0.0.1:7861", help="WebUI base URL (default %(default)s)"
    )
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=64, help="width and height (default %(default)s)")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--sampler", default="Euler")
    ap.add_argument("--denoise", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--motion-module", default="mm_sd15_v2.safetensors")
    ap.add_argument("--repeat", type=int, default=1, help="send the request this many times")
    ap.add_argument(
        "--timeout", type=float, default=900, help="seconds per request (default %(default)s)"
    )
    args = ap.parse_args()

    payload = {
        "prompt": "a photo of a cat",
        "negative_prompt": "",
        "seed": args.seed,
        "steps": args.steps,
        "sampler_name": args.sampler,
        "cfg_scale": 7,
        "width": args.size,
        "height": args.size,
        "denoising_strength": args.denoise,
        "init_images": [base64.b64encode(make_png(args.size, args.size)).decode()],
        "alwayson_scripts": {
            "AnimateDiff": {
                "args": [
                    {
                        "enable": True,
                        "model": args.motion_module,
                        "video_length": args.frames,
                        "batch_size": args.frames,
                        "fps": 8,
                        "format": ["PNG"],
                    }
                ]
            }
        },
    }
    url = args.url.rstrip("/") + "/sdapi/v1/img2img"
    ok = True
    for n in range(1, args.repeat + 1):
        t0 = time.monotonic()
        try:
            result = post_json(url, payload, args.timeout)
        except urllib.error.HTTPError as e:
            print(
                f"request {n}: HTTP {e.code}: {e.read()[:2000].decode(errors='replace')}",
                file=sys.stderr,
            )
            return 1
        except (urllib.error.URLError, OSError) as e:
            print(f"request {n}: cannot reach {url}: {e}", file=sys.stderr)
            return 1
        elapsed = time.monotonic() - t0
        problems, stats = [], []
        images = result.get("images") or []
        if len(images) != args.frames:
            problems.append(f"{len(images)} images, expected {args.frames}")
        for i, b64 in enumerate(images):
            try:
                w, h, px = read_png(base64.b64decode(b64))
            except Exception as e:
                problems.append(f"image {i}: {e}")
                continue
            if (w, h) != (args.size, args.size):
                problems.append(f"image {i} is {w}x{h}, expected {args.size}x{args.size}")
            mean = sum(px) / len(px)
            std = (sum((v - mean) ** 2 for v in px) / len(px)) ** 0.5
            stats.append(f"{mean:.0f}/{std:.0f}")
        if stats and all(s.endswith("/0") for s in stats):
            problems.append("all frames are flat (NaN or black output?)")
        status = "FAIL: " + "; ".join(problems) if problems else "ok"
        print(
            f"request {n}: {len(images)} images in {elapsed:.1f} s, pixel mean/std {' '.join(stats)}: {status}"
        )
        ok = ok and not problems
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
