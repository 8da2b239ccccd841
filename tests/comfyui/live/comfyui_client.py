"""A small client for ComfyUI's HTTP API (standard library + numpy), for the live suite.

``POST /prompt`` (API-format workflow) → ``prompt_id``, or HTTP 400 with ``node_errors``;
``GET /history/<id>`` until the prompt has a status; ``GET /view`` for output files;
``POST /upload/image`` for the picture; ``POST /free`` to drop ComfyUI's node cache (it
re-runs nothing of an identical prompt otherwise); ``GET /models/<folder>`` for the files a
loader lists. ComfyUI v0.12.1, server.py.

``wan_workflow`` builds ComfyUI's native Wan text-to-video graph for the random Wan files
and the test-only conditioning node of tools/SETUP.md ("Wan 2.1"), with a splice point for
nodes between the model and the sampler.
"""

from __future__ import annotations

import copy
import io
import json
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


class PromptRefused(Exception):
    """HTTP 400 from /prompt: the body's error and node_errors."""

    def __init__(self, body: dict) -> None:
        self.body = body
        super().__init__(json.dumps(body)[:2000])


class PromptFailed(Exception):
    """The prompt ran and stopped with an execution_error."""

    def __init__(self, node_type: str, message: str) -> None:
        self.node_type, self.message = node_type, message
        super().__init__(f"{node_type}: {message}")


@dataclass
class ComfyUI:
    url: str
    timeout: float = 1200.0

    def _request(self, path: str, data: bytes | None = None, headers: dict | None = None) -> bytes:
        request = urllib.request.Request(
            self.url.rstrip("/") + path, data=data, headers=headers or {}
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return response.read()

    def object_info(self, node: str) -> dict:
        return json.loads(self._request(f"/object_info/{node}"))[node]

    def logs(self) -> str:
        """The server's recent log lines (``GET /internal/logs``, a frontend route: the
        last 300 records, app/logger.py)."""
        return json.loads(self._request("/internal/logs"))

    def models(self, folder: str) -> list[str]:
        """The files ComfyUI lists in a model folder (``diffusion_models``, ``vae``, …)."""
        return json.loads(self._request(f"/models/{folder}"))

    def upload_png(self, png: bytes, name: str) -> str:
        boundary = uuid.uuid4().hex
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
                "Content-Type: image/png\r\n\r\n"
            ).encode()
            + png
            + (
                f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="overwrite"\r\n\r\ntrue'
                f"\r\n--{boundary}--\r\n"
            ).encode()
        )
        answer = self._request(
            "/upload/image", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        return json.loads(answer)["name"]

    def free(self) -> None:
        """Drop the node cache, so that the next prompt runs every node again."""
        self._request(
            "/free",
            json.dumps({"free_memory": True}).encode(),
            {"Content-Type": "application/json"},
        )

    def queue(self, workflow: dict) -> str:
        data = json.dumps({"prompt": workflow, "client_id": "nr-live"}).encode()
        try:
            answer = self._request("/prompt", data, {"Content-Type": "application/json"})
        except urllib.error.HTTPError as error:
            if error.code == 400:
                raise PromptRefused(json.loads(error.read())) from None
            raise
        return json.loads(answer)["prompt_id"]

    def wait(self, prompt_id: str) -> dict:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            history = json.loads(self._request(f"/history/{prompt_id}"))
            entry = history.get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                status = entry["status"]
                if status.get("status_str") == "error":
                    for kind, data in status.get("messages", []):
                        if kind == "execution_error":
                            raise PromptFailed(
                                data.get("node_type", "?"), data.get("exception_message", "")
                            )
                    raise PromptFailed("?", json.dumps(status)[:2000])
                if status.get("completed"):
                    return entry
            time.sleep(0.5)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {self.timeout} s")

    def view(self, item: dict) -> bytes:
        """An output file, named as /history lists it (filename, subfolder, type)."""
        query = urllib.parse.urlencode(
            {"filename": item["filename"], "subfolder": item["subfolder"], "type": item["type"]}
        )
        return self._request(f"/view?{query}")

    def run(self, workflow: dict, *, fresh: bool = True) -> dict[str, np.ndarray]:
        """Queue, wait, and return every saved latent by its node id."""
        return self.saved_latents(self.run_entry(workflow, fresh=fresh))

    def run_entry(self, workflow: dict, *, fresh: bool = True) -> dict:
        """Queue, wait, and return the prompt's /history entry (its ``outputs`` by node id)."""
        if fresh:
            self.free()
        return self.wait(self.queue(workflow))

    def saved_latents(self, entry: dict) -> dict[str, np.ndarray]:
        """Every latent a SaveLatent node of a /history entry wrote, by node id."""
        latents: dict[str, np.ndarray] = {}
        for node_id, output in entry.get("outputs", {}).items():
            for item in output.get("latents", []):
                latents[node_id] = read_safetensors(self.view(item))["latent_tensor"]
        return latents


_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "U8": "u1"}


def read_safetensors(data: bytes) -> dict[str, np.ndarray]:
    """The tensors of a .safetensors file (SaveLatent's .latent is one) as float32/int arrays:
    an 8-byte little-endian header length, a JSON header, then the raw data. Read here so
    that the suite needs no torch and no safetensors package."""
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    body = memoryview(data)[8 + size :]
    tensors = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        begin, end = meta["data_offsets"]
        raw = body[begin:end]
        if meta["dtype"] == "BF16":  # the upper half of a float32
            array = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            array = np.frombuffer(raw, _DTYPES[meta["dtype"]])
        array = array.reshape(meta["shape"])
        tensors[name] = array.astype(np.float32) if array.dtype.kind == "f" else array.copy()
    return tensors


def png_bytes(pixels: np.ndarray) -> bytes:
    """A [H, W, 3] float picture in [0, 1] as PNG bytes."""
    from PIL import Image

    array = (np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


# ------------------------------------------------------------------ Wan (tools/SETUP.md)
# The random files of make_random_comfyui_models.py --wan / --wan22.
WAN21_T2V = "random-wan2.1-t2v.safetensors"
WAN21_VAE = "random-wan2.1-vae.safetensors"
WAN22_TI2V_5B = "random-wan2.2-ti2v-5b.safetensors"
WAN22_VAE = "random-wan2.2-vae.safetensors"
# Node ids of wan_workflow's graph; a splice adds its own from "20" up.
WAN_NODES = {
    "unet": "1",  # UNETLoader -> MODEL
    "shift": "2",  # ModelSamplingSD3 -> MODEL (absent with shift=None)
    "vae": "3",  # VAELoader -> VAE
    "text": "4",  # NRTestWanConditioning -> positive, negative
    "zero": "6",  # ConditioningZeroOut (negative="zero")
    "latent": "5",  # EmptyHunyuanLatentVideo / Wan22ImageToVideoLatent -> LATENT
    "sampler": "10",  # KSampler
    "save_latent": "11",  # SaveLatent of the sampled latent
    "decode": "12",  # VAEDecode
    "video": "13",  # CreateVideo
    "save_video": "14",  # SaveVideo
    "info": "15",  # NRTestModelInfo on the sampler's model (info=True)
}

Link = list  # [node id, output index]
Splice = Callable[[dict, Link, Link], tuple[Link, Link]]


def wan_workflow(
    *,
    unet: str = WAN21_T2V,
    vae: str = WAN21_VAE,
    sampler_name: str = "uni_pc",
    scheduler: str = "simple",
    steps: int = 4,
    cfg: float = 6.0,
    seed: int = 0,
    frames: int = 9,
    width: int = 32,
    height: int = 32,
    shift: float | None = 8.0,
    denoise: float = 1.0,
    text_seed: int = 0,
    tokens: int = 16,
    negative: str = "random",
    latent: str = "EmptyHunyuanLatentVideo",
    splice: Splice | None = None,
    decode: bool = True,
    info: bool = False,
    prefix: str = "nr_live/wan",
) -> dict:
    """ComfyUI's native Wan text-to-video graph (API format), wired as ComfyUI's own template
    ``text_to_video_wan`` (comfyui-workflow-templates-media-video 0.3.43: uni_pc / simple,
    cfg 6, shift 8, CreateVideo at 16 fps), at test size and steps:
    UNETLoader -> ModelSamplingSD3 (``shift``; None leaves the model's own, 8.0 for Wan) ->
    KSampler on an EmptyHunyuanLatentVideo of ``frames`` frames (``[1, 16, (frames - 1) // 4
    + 1, height / 8, width / 8]``; ``latent="Wan22ImageToVideoLatent"`` for the 48-channel
    Wan 2.2 5B, /16) -> SaveLatent (node "11") and VAEDecode -> CreateVideo -> SaveVideo
    (node "14", ``decode``). The text conditioning is the test node NRTestWanConditioning
    (``text_seed``, ``tokens``; ``[1, 512, 4096]``): its second output is the negative, or
    ``negative="zero"`` puts ComfyUI's ConditioningZeroOut of the positive there.

    ``splice(wf, model, latent) -> (model, latent)``: called with the workflow so far, the
    MODEL link that would feed the sampler (ModelSamplingSD3's, or UNETLoader's) and the
    LATENT link (the empty latent's); it adds its nodes (ids from "20" up; the VAE is
    ``[WAN_NODES["vae"], 0]``) and returns the MODEL and LATENT links the KSampler takes.
    ``info`` adds NRTestModelInfo on the sampler's MODEL (node "15")."""
    ids = WAN_NODES
    wf: dict = {
        ids["unet"]: {
            "class_type": "UNETLoader",
            "inputs": {"unet_name": unet, "weight_dtype": "default"},
        },
        ids["vae"]: {"class_type": "VAELoader", "inputs": {"vae_name": vae}},
        ids["text"]: {
            "class_type": "NRTestWanConditioning",
            "inputs": {"seed": text_seed, "length": 512, "tokens": tokens, "width": 4096},
        },
    }
    model: Link = [ids["unet"], 0]
    if shift is not None:
        wf[ids["shift"]] = {
            "class_type": "ModelSamplingSD3",
            "inputs": {"model": model, "shift": shift},
        }
        model = [ids["shift"], 0]
    size = {"width": width, "height": height, "length": frames, "batch_size": 1}
    if latent == "EmptyHunyuanLatentVideo":
        wf[ids["latent"]] = {"class_type": latent, "inputs": size}
    elif latent == "Wan22ImageToVideoLatent":
        wf[ids["latent"]] = {"class_type": latent, "inputs": {"vae": [ids["vae"], 0], **size}}
    else:
        raise ValueError(f"latent = {latent!r}: EmptyHunyuanLatentVideo or Wan22ImageToVideoLatent")
    latent_link: Link = [ids["latent"], 0]
    if negative == "zero":
        wf[ids["zero"]] = {
            "class_type": "ConditioningZeroOut",
            "inputs": {"conditioning": [ids["text"], 0]},
        }
        negative_link: Link = [ids["zero"], 0]
    elif negative == "random":
        negative_link = [ids["text"], 1]
    else:
        raise ValueError(f"negative = {negative!r}: random or zero")
    if splice is not None:
        model, latent_link = splice(wf, model, latent_link)
    wf[ids["sampler"]] = {
        "class_type": "KSampler",
        "inputs": {
            "model": model,
            "seed": seed,
            "steps": steps,
            "cfg": cfg,
            "sampler_name": sampler_name,
            "scheduler": scheduler,
            "positive": [ids["text"], 0],
            "negative": negative_link,
            "latent_image": latent_link,
            "denoise": denoise,
        },
    }
    wf[ids["save_latent"]] = {
        "class_type": "SaveLatent",
        "inputs": {"samples": [ids["sampler"], 0], "filename_prefix": prefix},
    }
    if decode:
        wf[ids["decode"]] = {
            "class_type": "VAEDecode",
            "inputs": {"samples": [ids["sampler"], 0], "vae": [ids["vae"], 0]},
        }
        wf[ids["video"]] = {
            "class_type": "CreateVideo",
            "inputs": {"images": [ids["decode"], 0], "fps": 16.0},
        }
        wf[ids["save_video"]] = {
            "class_type": "SaveVideo",
            "inputs": {
                "video": [ids["video"], 0],
                "filename_prefix": f"video/{prefix.replace('/', '_')}",
                "format": "auto",
                "codec": "auto",
            },
        }
    if info:
        wf[ids["info"]] = {"class_type": "NRTestModelInfo", "inputs": {"model": model}}
    return wf


def model_info(entry: dict) -> dict:
    """NRTestModelInfo's JSON from a /history entry of a ``wan_workflow(info=True)`` prompt."""
    (text,) = entry["outputs"][WAN_NODES["info"]]["text"]
    return json.loads(text)


# The real Wan files of ComfyUI's examples and templates -> the random ones.
WAN_STAND_INS = {
    "wan2.1_t2v_1.3B_fp16.safetensors": WAN21_T2V,
    "wan_2.1_vae.safetensors": WAN21_VAE,
    "wan2.2_ti2v_5B_fp16.safetensors": WAN22_TI2V_5B,
    "wan2.2_vae.safetensors": WAN22_VAE,
}


def wan_on_test_host(workflow: dict) -> dict:
    """A copy of a Wan workflow (UNETLoader, VAELoader, CLIPLoader of type ``wan`` and its
    CLIPTextEncode nodes) for the test host of tools/SETUP.md section 9, which has no text
    encoder: the random files stand in for the real ones (``WAN_STAND_INS``), each
    CLIPTextEncode on such a loader becomes, under the same node id, an NRTestWanConditioning
    (its output 0 is a CONDITIONING, seeded by the node's place: 0, 1, …), and the loader
    goes. Links elsewhere are left as they are."""
    wf = copy.deepcopy(workflow)
    loaders = {
        k
        for k, n in wf.items()
        if n["class_type"] == "CLIPLoader" and n["inputs"].get("type") == "wan"
    }
    encoders = sorted(
        (
            k
            for k, n in wf.items()
            if n["class_type"] == "CLIPTextEncode"
            and (n["inputs"].get("clip") or [None])[0] in loaders
        ),
        key=lambda k: (len(k), k),
    )
    for seed, k in enumerate(encoders):
        wf[k] = {
            "class_type": "NRTestWanConditioning",
            "inputs": {"seed": seed, "length": 512, "tokens": 16, "width": 4096},
        }
    for k in loaders:
        used = any(
            isinstance(v, list) and v and v[0] == k
            for n in wf.values()
            for v in n["inputs"].values()
        )
        if not used:
            del wf[k]
    for n in wf.values():
        for key in ("unet_name", "vae_name"):
            if key in n["inputs"]:
                n["inputs"][key] = WAN_STAND_INS.get(n["inputs"][key], n["inputs"][key])
    return wf
