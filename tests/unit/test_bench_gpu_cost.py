"""bench/gpu_cost.py in its ``--tiny`` mode (CPU, tiny random pipelines, seconds).

The benchmark's real figures need a GPU; this keeps it running and checks what the tiny
run can already tell: every model × scheduler is measured (the UNet models with the SD
schedulers, Wan 2.1 with FlowMatch Euler and UniPC in flow mode), the stock and rectified
runs give videos of one shape, and rectification makes no synchronising call in its
per-step code and at most two per video (``bench.syncs.SyncRecorder``, the CPU proxy).
"""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from bench import gpu_cost

MODELS = list(gpu_cost.MODELS)
SCHEDULERS = list(gpu_cost.SCHEDULERS)
WAN = "wan2.1-1.3b"


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpu_cost") / "tiny.json"
    returned = gpu_cost.main(["--tiny", "--json", str(path)])
    written = json.loads(path.read_text(encoding="utf-8"))
    assert written["rows"] == returned["rows"]
    return written


def test_every_model_and_scheduler_has_a_row(result):
    assert {"ddim", "euler", "euler_a", "dpmpp_2m", "unipc", "lcm"} <= set(SCHEDULERS)
    assert {"sd15", "sdxl", "modelscope", WAN} <= set(MODELS)
    expected = [(m, s) for m in MODELS for s in gpu_cost.schedulers_for(m)]
    rows = [(r["model"], r["scheduler"]) for r in result["rows"]]
    assert sorted(rows) == sorted(expected)
    assert result["device"] == "cpu" and result["targets"]["judged"] is False


def test_wan_rows_are_measured_with_both_flow_schedulers(result):
    wan = {r["scheduler"]: r for r in result["rows"] if r["model"] == WAN}
    assert set(wan) == {"flow_euler", "flow_unipc"}
    for r in wan.values():
        assert math.isfinite(r["ratio"]) and r["ratio"] > 0, r
        assert all(math.isfinite(x) and x > 0 for x in r["pair_ratios"]), r
        assert (r["frames"], r["height"], r["width"]) == (5, 32, 32)
        assert r["dtype"] == "float32" and r["finite"], r
    euler = gpu_cost.scheduler("flow_euler")
    assert type(euler).__name__ == "FlowMatchEulerDiscreteScheduler"
    assert euler.config.shift == gpu_cost.WAN_FLOW_SHIFT == 3.0
    unipc = gpu_cost.scheduler("flow_unipc")
    assert type(unipc).__name__ == "UniPCMultistepScheduler"
    assert unipc.config.prediction_type == "flow_prediction" and unipc.config.use_flow_sigmas
    assert unipc.config.flow_shift == 3.0


def test_the_full_size_wan_row_is_wan21_t2v_1_3b():
    """The transformer of Wan-AI/Wan2.1-T2V-1.3B-Diffusers (built on the meta device: no
    memory, no time): 30 layers of 1536 = 12 × 128, ffn 8960, 1.42 B parameters; the text
    encoder has UMT5-XXL's width, which the transformer's text_dim reads."""
    import torch

    with torch.device("meta"):
        pipe = gpu_cost.wan21(tiny=False)
    config = pipe.transformer.config
    assert (config.num_layers, config.num_attention_heads, config.attention_head_dim) == (
        30,
        12,
        128,
    )
    assert (config.ffn_dim, config.in_channels, config.out_channels) == (8960, 16, 16)
    assert tuple(config.patch_size) == (1, 2, 2)
    assert (config.text_dim, config.freq_dim) == (4096, 256)
    assert sum(p.numel() for p in pipe.transformer.parameters()) == 1_418_996_800
    assert pipe.text_encoder.config.d_model == config.text_dim
    assert pipe.text_encoder.config.num_layers == gpu_cost.TEXT_LAYERS
    assert (pipe.vae_scale_factor_spatial, pipe.vae_scale_factor_temporal) == (8, 4)
    assert pipe.vae.config.z_dim == config.in_channels


def test_times_are_positive_and_the_ratio_is_theirs(result):
    for r in result["rows"]:
        assert len(r["stock_s"]) == len(r["rectified_s"]) == result["settings"]["pairs"] == 1
        assert all(t > 0 for t in r["stock_s"] + r["rectified_s"]), r
        assert r["stock_median_s"] > 0 and r["rectified_median_s"] > 0
        assert r["ratio"] == pytest.approx(r["rectified_median_s"] / r["stock_median_s"])
        assert r["peak_stock_bytes"] is None and r["verdict"] is None  # no CUDA: not judged


def test_stock_and_rectified_videos_have_the_same_shape(result):
    frames = result["settings"]["frames"]
    for r in result["rows"]:
        assert r["stock_shape"] == r["rectified_shape"], r
        if r["model"] == WAN:  # [B, C, (F − 1)//4 + 1, h, w]: Wan's causal VAE, ×8
            settings = result["settings"]
            latent_frames = (settings["wan_frames"] - 1) // 4 + 1
            h, w = settings["wan_height"] // 8, settings["wan_width"] // 8
            assert r["stock_shape"] == r["latent_shape"] == [1, 16, latent_frames, h, w], r
        else:
            assert frames in r["stock_shape"] and 4 in r["stock_shape"]  # frames, channels
        assert r["finite"], r
        # 4 steps, τ [0, 0.6]: the first three are rectified
        assert r["rectified_steps"] == [0, 1, 2], r


def test_rectification_adds_no_synchronising_call_per_step_and_few_per_video(result):
    """Issue 17: none in the hook's per-step code; at most 2 per video (project code only,
    counted on the CPU: reads of any tensor count, wherever it would live on a GPU)."""
    for r in result["rows"]:
        assert r["syncs_kind"] == "project-code synchronising calls (CPU proxy)"
        assert r["syncs_stock"] == 0
        assert r["syncs_in_steps"] == 0, "\n".join(r["project_sites_in_steps"])
        assert r["syncs_rectified"] == len(r["project_sites"])
        assert r["syncs_rectified"] <= 2, (
            f"{r['model']}/{r['scheduler']}: {r['syncs_rectified']} synchronising calls per video:\n"
            + "\n".join(r["project_sites"])
        )
