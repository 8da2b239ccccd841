"""A small client for ComfyUI's HTTP API (standard library + numpy), for the live suite.

``POST /prompt`` (API-format workflow) → ``prompt_id``, or HTTP 400 with ``node_errors``;
``GET /history/<id>`` until the prompt has a status; ``GET /view`` for output files;
``POST /upload/image`` for the picture; ``POST /free`` to drop ComfyUI's node cache (it
re-runs nothing of an identical prompt otherwise). ComfyUI v0.12.1, server.py.
"""

from __future__ import annotations

import io
import json
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
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
        if fresh:
            self.free()
        entry = self.wait(self.queue(workflow))
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
