"""The README's "Use it from diffusers" examples run as written, with tiny local pipelines.

Each Python block of that section is executed unchanged; only what would download or
touch the user's files is replaced: ``from_pretrained`` returns the tiny pipelines of
tiny_diffusers.py, ``load_image`` a generated picture, and the exporters write into a
temporary folder. So a renamed argument or import in the adapter breaks this test.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import tiny_diffusers as td

README = Path(__file__).resolve().parents[2] / "README.md"


def examples() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Use it from diffusers", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_section_has_the_two_examples():
    blocks = examples()
    assert len(blocks) == 2
    assert "AnimateDiffPipeline" in blocks[0] and "TextToVideoSDPipeline" in blocks[1]


@pytest.mark.parametrize("index", [0, 1], ids=["AnimateDiff", "ModelScope"])
def test_the_example_runs(index, tmp_path, monkeypatch):
    import diffusers
    import diffusers.utils
    import numpy as np
    from diffusers.pipelines.deprecated.text_to_video_synthesis import TextToVideoSDPipeline
    from PIL import Image

    ramp = np.linspace(0, 255, 64, dtype=np.uint8)
    picture = Image.fromarray(np.stack([np.tile(ramp, (64, 1))] * 3, axis=-1))
    written: list[str] = []

    def export(frames, path, *a, **k):
        assert len(frames) == 16
        written.append(path)
        return path

    animatediff = td.animatediff(tmp_path)
    modelscope = td.modelscope(tmp_path)
    monkeypatch.setattr(diffusers.utils, "load_image", lambda path: picture)
    monkeypatch.setattr(diffusers.utils, "export_to_gif", export)
    monkeypatch.setattr(diffusers.utils, "export_to_video", export)
    monkeypatch.setattr(diffusers.MotionAdapter, "from_pretrained", lambda *a, **k: None)
    monkeypatch.setattr(
        diffusers.AnimateDiffPipeline, "from_pretrained", lambda *a, **k: animatediff
    )
    monkeypatch.setattr(TextToVideoSDPipeline, "from_pretrained", lambda *a, **k: modelscope)
    ddim = diffusers.DDIMScheduler.from_config
    monkeypatch.setattr(
        diffusers.DDIMScheduler,
        "from_pretrained",
        lambda *a, subfolder=None, **k: ddim({**td.scheduler().config, **k}),
    )
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(examples()[index], f"README example {index + 1}", "exec"), namespace)
    assert written == [["rectified.gif", "rectified.mp4"][index]]
    report = namespace["pipe"].noise_rectification
    assert report["rectified_steps"] == list(range(15))  # 60 % of 25 steps
