"""bench/gpu_cost.py in its ``--tiny`` mode (CPU, tiny random pipelines, seconds).

The benchmark's real figures need a GPU; this keeps it running and checks what the tiny
run can already tell: every model × scheduler is measured, the stock and rectified runs
give videos of one shape, and rectification makes no synchronising call in its per-step
code and at most two per video (``bench.syncs.SyncRecorder``, the CPU proxy).
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from bench import gpu_cost

MODELS = list(gpu_cost.MODELS)
SCHEDULERS = list(gpu_cost.SCHEDULERS)


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpu_cost") / "tiny.json"
    returned = gpu_cost.main(["--tiny", "--json", str(path)])
    written = json.loads(path.read_text(encoding="utf-8"))
    assert written["rows"] == returned["rows"]
    return written


def test_every_model_and_scheduler_has_a_row(result):
    assert {"ddim", "euler", "euler_a", "dpmpp_2m", "unipc", "lcm"} <= set(SCHEDULERS)
    rows = {(r["model"], r["scheduler"]) for r in result["rows"]}
    assert rows == {(m, s) for m in MODELS for s in SCHEDULERS}
    assert len(result["rows"]) == len(MODELS) * len(SCHEDULERS)
    assert result["device"] == "cpu" and result["targets"]["judged"] is False


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
        assert frames in r["stock_shape"] and 4 in r["stock_shape"]  # frames, latent channels
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
