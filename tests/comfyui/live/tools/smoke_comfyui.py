#!/usr/bin/env python3
"""Smoke test for a local ComfyUI + AnimateDiff-Evolved over the HTTP API.

Standard library only. Builds an API-format workflow (checkpoint -> AnimateDiff
-> KSampler on a latent batch of N frames -> VAEDecode -> SaveImage), POSTs it to
/prompt, polls /history/<id>, fetches every output image through /view and
checks that N PNGs of the asked size came back and are not flat.

Paths (--path):
  gen1     ADE_AnimateDiffLoaderGen1 ("AnimateDiff Loader")
  gen2     ADE_LoadAnimateDiffModel + ADE_ApplyAnimateDiffModelSimple + ADE_UseEvolvedSampling
  context  gen2 plus ADE_StandardUniformContextOptions (--context-length, --context-overlap)
  none     no AnimateDiff at all (plain batch)

Examples:
  python3 smoke_comfyui.py                              # gen1, 8 frames, 64x64, euler, 4 steps
  python3 smoke_comfyui.py --path gen2 --repeat 2
  python3 smoke_comfyui.py --path context --frames 12 --context-length 8
  python3 smoke_comfyui.py --path gen2 --ckpt random-sdxl-slim-vega.safetensors --motion-model hsxl_temporal_layers_native.safetensors
  python3 smoke_comfyui.py --save-workflow /tmp/wf      # also write the API-format JSON sent

Exit status 0 when every request returned the expected images, 1 otherwise.
"""

import argparse
import json
import os
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zlib


def build_workflow(a):
    """API format: {node_id: {"class_type": ..., "inputs": {...}}}; links are [node_id, output_index]."""
    wf = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": a.ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": a.prompt, "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": a.negative, "clip": ["1", 1]}},
        "4": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": a.size, "height": a.size, "batch_size": a.frames},
        },
    }
    model = ["1", 0]
    if a.path == "gen1":
        wf["10"] = {
            "class_type": "ADE_AnimateDiffLoaderGen1",
            "inputs": {
                "model": model,
                "model_name": a.motion_model,
                "beta_schedule": a.beta_schedule,
            },
        }
        model = ["10", 0]
    elif a.path in ("gen2", "context"):
        wf["10"] = {
            "class_type": "ADE_LoadAnimateDiffModel",
            "inputs": {"model_name": a.motion_model},
        }
        wf["11"] = {
            "class_type": "ADE_ApplyAnimateDiffModelSimple",
            "inputs": {"motion_model": ["10", 0]},
        }
        use = {"model": model, "beta_schedule": a.beta_schedule, "m_models": ["11", 0]}
        if a.path == "context":
            wf["12"] = {
                "class_type": "ADE_StandardUniformContextOptions",
                "inputs": {
                    "context_length": a.context_length,
                    "context_stride": 1,
                    "context_overlap": a.context_overlap,
                    "fuse_method": "pyramid",
                    "use_on_equal_length": False,
                    "start_percent": 0.0,
                    "guarantee_steps": 1,
                },
            }
            use["context_options"] = ["12", 0]
        wf["13"] = {"class_type": "ADE_UseEvolvedSampling", "inputs": use}
        model = ["13", 0]
    wf["5"] = {
        "class_type": "KSampler",
        "inputs": {
            "model": model,
            "seed": a.seed,
            "steps": a.steps,
            "cfg": a.cfg,
            "sampler_name": a.sampler,
            "scheduler": a.scheduler,
            "positive": ["2", 0],
            "negative": ["3", 0],
            "latent_image": ["4", 0],
            "denoise": 1.0,
        },
    }
    wf["6"] = {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}}
    wf["7"] = {
        "class_type": "SaveImage",
        "inputs": {"images": ["6", 0], "filename_prefix": a.prefix},
    }
    return wf


def http(url, data=None, timeout=60):
    req = urllib.request.Request(
        url,
        data=None if data is None else json.dumps(data).encode(),
        headers={"Content-Type": "application/json"} if data is not None else {},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
    try:
        with opener.open(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def png_info(blob):
    """(width, height, mean, std) of an 8-bit RGB/RGBA PNG, decoded with zlib only."""
    assert blob[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    w = h = ct = None
    while pos < len(blob):
        n, typ = struct.unpack(">I4s", blob[pos : pos + 8])
        body = blob[pos + 8 : pos + 8 + n]
        if typ == b"IHDR":
            w, h, depth, ct = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ct in (2, 6), "expects 8-bit RGB(A)"
        elif typ == b"IDAT":
            idat += body
        pos += 12 + n
    bpp = 3 if ct == 2 else 4
    raw, stride = zlib.decompress(idat), w * bpp
    prev, vals = bytearray(stride), []
    for y in range(h):
        f, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
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
        vals.extend(v for i, v in enumerate(line) if i % bpp < 3)
        prev = line
    m = sum(vals) / len(vals)
    s = (sum((v - m) ** 2 for v in vals) / len(vals)) ** 0.5
    return w, h, m, s


def proc_mem(pidfile):
    """VmRSS / VmHWM of the server in GB, from its PID file (same machine only)."""
    try:
        pid = open(pidfile).read().strip()
        with open(f"/proc/{pid}/status") as f:
            st = dict(line.split(":", 1) for line in f if ":" in line)
        rss, peak = (int(st[k].split()[0]) / 1024**2 for k in ("VmRSS", "VmHWM"))
        return f"server RSS {rss:.2f} GB, peak {peak:.2f} GB"
    except (OSError, KeyError, ValueError):
        return ""


def run_once(a, wf, n):
    client_id = str(uuid.uuid4())
    t0 = time.time()
    code, body = http(a.url + "/prompt", {"prompt": wf, "client_id": client_id})
    if code != 200:
        print(
            f"request {n}: POST /prompt answered HTTP {code}: {body.decode(errors='replace')[:2000]}"
        )
        return False
    pid = json.loads(body)["prompt_id"]
    entry = None
    while time.time() - t0 < a.timeout:
        code, body = http(f"{a.url}/history/{pid}")
        h = json.loads(body) if code == 200 else {}
        if pid in h and h[pid].get("status", {}).get("completed") is not None:
            entry = h[pid]
            if entry["status"]["completed"] or entry["status"].get("status_str") == "error":
                break
        time.sleep(0.5)
    dt = time.time() - t0
    if entry is None:
        print(f"request {n}: no result after {a.timeout} s (prompt {pid})")
        return False
    st = entry["status"]
    if st.get("status_str") != "success":
        errs = [m for m in st.get("messages", []) if m[0] == "execution_error"]
        detail = errs[0][1] if errs else st
        if isinstance(detail, dict) and "exception_message" in detail:
            detail = (
                f"{detail.get('node_type')} (node {detail.get('node_id')}): "
                f"{detail.get('exception_type')}: {detail['exception_message'].strip()}"
            )
        print(f"request {n}: failed after {dt:.1f} s: {detail}")
        return False
    images = [im for out in entry["outputs"].values() for im in out.get("images", [])]
    stats = []
    for im in images:
        q = urllib.parse.urlencode(
            {"filename": im["filename"], "subfolder": im["subfolder"], "type": im["type"]}
        )
        code, blob = http(f"{a.url}/view?{q}")
        if code != 200:
            print(f"request {n}: GET /view?{q} answered HTTP {code}")
            return False
        stats.append(png_info(blob))
    ok = len(stats) == a.frames and all(
        w == a.size and h == a.size and s > 1.0 for w, h, _, s in stats
    )
    means = " ".join(f"{m:.0f}/{s:.0f}" for _, _, m, s in stats)
    mem = proc_mem(a.pidfile) if a.pidfile else ""
    print(
        f"request {n}: {len(stats)} images in {dt:.1f} s, pixel mean/std {means}: "
        f"{'ok' if ok else 'WRONG'}{'; ' + mem if mem else ''}"
    )
    return ok


def main():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--url", default=os.environ.get("COMFYUI_URL", "http://127.0.0.1:8188"))
    p.add_argument("--path", choices=["gen1", "gen2", "context", "none"], default="gen1")
    p.add_argument("--ckpt", default="random-sd15.safetensors")
    p.add_argument("--motion-model", default="mm_sd15_v2.safetensors")
    p.add_argument("--beta-schedule", default="autoselect")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--cfg", type=float, default=7.0)
    p.add_argument("--sampler", default="euler")
    p.add_argument("--scheduler", default="normal")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--context-length", type=int, default=8)
    p.add_argument("--context-overlap", type=int, default=4)
    p.add_argument("--prompt", default="a photo of a cat")
    p.add_argument("--negative", default="")
    p.add_argument("--prefix", default="smoke")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="send N requests; each uses seed+i, since ComfyUI answers an identical "
        "prompt from its cache without sampling again",
    )
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument(
        "--pidfile", help="server PID file; prints the server's RSS and peak after each request"
    )
    p.add_argument(
        "--save-workflow", metavar="DIR", help="write the API-format workflow sent as JSON"
    )
    a = p.parse_args()
    a.url = a.url.rstrip("/")
    ok = True
    for i in range(a.repeat):
        wf = build_workflow(argparse.Namespace(**{**vars(a), "seed": a.seed + i}))
        if a.save_workflow and i == 0:
            os.makedirs(a.save_workflow, exist_ok=True)
            name = f"{a.path}_{os.path.splitext(a.motion_model)[0]}_{a.frames}f.json"
            with open(os.path.join(a.save_workflow, name), "w") as f:
                json.dump(wf, f, indent=1)
        ok = run_once(a, wf, i + 1) and ok
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
