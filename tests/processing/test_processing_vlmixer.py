import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, AutoTokenizer

from modeling_vlmixer import VLMixerConfig, VLMixerModel
from processing import (
    PatchGallery,
    RegionFeatures,
    VLMixerProcessor,
    VLMixerRegionFeatureExtractor,
    add_image_token,
)
from processing.cutmix_picture import render_cutmix


FEATURE_DIM = 8


def _record(image_id, labels, scores, seed, image_path=None, width=64, height=48):
    rng = np.random.default_rng(seed)
    boxes = []
    for _ in labels:
        x1, y1 = rng.uniform(0, width / 2), rng.uniform(0, height / 2)
        boxes.append([x1, y1, x1 + rng.uniform(4, width / 2), y1 + rng.uniform(4, height / 2)])
    return RegionFeatures(
        features=rng.normal(size=(len(labels), FEATURE_DIM)).astype(np.float32),
        boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
        image_width=width,
        image_height=height,
        labels=list(labels),
        scores=np.array(scores, dtype=np.float32),
        image_id=image_id,
        image_path=image_path,
    )


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for index in range(3):
        path = folder / f"img{index}.png"
        Image.fromarray(np.full((48, 64, 3), 60 * index + 40, dtype=np.uint8)).save(path)
        paths.append(str(path))
    return [
        _record("img0", ["dog", "frisbee", "grass"], [0.9, 0.8, 0.5], 0, paths[0]),
        _record("img1", ["giraffe", "traffic light", "dog"], [0.95, 0.7, 0.6], 1, paths[1]),
        _record("img2", ["skateboard", "man"], [0.85, 0.9], 2, paths[2]),
    ]


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    return add_image_token(AutoTokenizer.from_pretrained(minilm_path))[0]


@pytest.fixture(scope="module")
def gallery(records):
    return PatchGallery.build(records, feature_dtype="float32", show_progress=False)


@pytest.fixture
def processor(tokenizer, gallery):
    extractor = VLMixerRegionFeatureExtractor(feature_dim=FEATURE_DIM, max_regions=10)
    return VLMixerProcessor(extractor, tokenizer, gallery=gallery, r_cmc=1.0)


@pytest.fixture(scope="module")
def model():
    config = VLMixerConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        visual_feature_dim=FEATURE_DIM,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    return VLMixerModel(config).eval()


SENTENCES = [
    "Two dogs chase a frisbee on the grass.",
    "Nothing here is in the gallery at all.",
    "A giraffe waits at the traffic light near a skateboard.",
]
MODEL_KEYS = (
    "input_ids",
    "attention_mask",
    "token_type_ids",
    "position_ids",
    "visual_features",
    "visual_boxes",
)


def _model_inputs(batch):
    return {key: batch[key] for key in MODEL_KEYS if key in batch}


def test_cutmix_batch_feeds_the_model(processor, model, tokenizer, gallery):
    processor.check_model_config(model.config)
    batch = processor(text=SENTENCES, cutmix=True, seed=0, return_tensors="pt")
    mixed, text = batch["input_ids"], batch["text_input_ids"]
    assert mixed.shape == text.shape
    assert (
        text.tolist()
        == processor.tokenizer(SENTENCES, padding=True, return_tensors="pt")["input_ids"].tolist()
    )
    slots = mixed == 1
    assert slots[0].any() and not slots[1].any() and slots[2].any()  # r_cmc = 1: every grounded word replaced
    assert torch.equal(mixed[~slots], text[~slots])
    # "giraffe" is two word pieces: both become slots holding the same patch; "traffic light" is one span.
    giraffe = tokenizer("giraffe", add_special_tokens=False)["input_ids"]
    assert len(giraffe) > 1
    row = 2
    positions = [i for i, token in enumerate(text[row].tolist()) if token in giraffe]
    assert all(slots[row, i] for i in positions)
    assert torch.equal(batch["position_ids"][row, : len(text[row])], torch.arange(len(text[row])))
    assert batch["visual_features"].shape[1] == int(slots.sum(1).max())
    # Each row's slot features are gallery patches of the replaced concept.
    first_patch = batch["visual_features"][row, 0]
    giraffe_patches = gallery.get_features(gallery.patches_of(gallery.concept_id("giraffe")))
    assert any(torch.allclose(first_patch, patch) for patch in giraffe_patches)

    output = model(**_model_inputs(batch))
    assert output.last_hidden_state.shape == (*mixed.shape, 32)
    text_output = model(input_ids=text, attention_mask=batch["attention_mask"])
    assert text_output.pooler_output.shape == (3, 32)

    again = processor(text=SENTENCES, cutmix=True, seed=0, return_tensors="pt")
    assert all(torch.equal(batch[k], again[k]) for k in batch)


def test_image_text_and_tag_batches_feed_the_model(processor, model, records):
    empty = RegionFeatures.empty("blank", 64, 48, FEATURE_DIM)
    batch = processor(
        text=["a dog with a frisbee", "an empty picture"],
        regions=[records[0], empty],
        tags=["dog frisbee grass", "nothing"],
        return_tensors="pt",
    )
    ids = batch["input_ids"]
    assert (ids[0] == 1).sum() == 3 and (ids[1] == 1).sum() == 0
    assert batch["visual_features"].shape == (2, 3, FEATURE_DIM)
    slot_positions = batch["position_ids"][0][ids[0] == 1]
    assert len(set(slot_positions.tolist())) == 1  # appended regions share one position
    assert batch["token_type_ids"][0][ids[0] == 1].eq(1).all()
    model(**_model_inputs(batch))

    tavp = processor(regions=records, return_tensors="pt")  # (c): tags read from the detector labels
    decoded = processor.tokenizer.decode(tavp["input_ids"][1], skip_special_tokens=True)
    assert decoded.startswith("giraffe traffic light dog")
    assert tavp["input_ids"].shape[1] <= 100
    model(**_model_inputs(tavp))

    text_only = processor(text=["a plain sentence"], return_tensors="pt")
    model(**_model_inputs(text_only))


def test_truncation_keeps_regions_and_alignment(processor, records):
    long_text = " ".join(["the dog runs"] * 60)
    batch = processor(text=[long_text], regions=[records[0]], return_tensors="np")
    assert batch["input_ids"].shape[1] == 100 and (batch["input_ids"][0] == 1).sum() == 3
    mixed = processor(text=[long_text], cutmix=True, seed=1, return_tensors="np")
    assert mixed["input_ids"].shape == mixed["text_input_ids"].shape == (1, 80)


def test_save_load_round_trip(tmp_path, processor):
    processor.save_pretrained(tmp_path)
    files = set(os.listdir(tmp_path))
    assert {
        "processor_config.json",
        "processing_vlmixer.py",
        "cross_modal_cutmix.py",
        "patch_gallery.py",
    } <= files
    config = json.loads((tmp_path / "processor_config.json").read_text())
    assert config["r_cmc"] == 1.0 and config["valp_max_length"] == 80
    reloaded = AutoProcessor.from_pretrained(tmp_path)
    assert (
        isinstance(reloaded, VLMixerProcessor)
        and reloaded.gallery.num_patches == processor.gallery.num_patches
    )
    first = processor(text=SENTENCES, cutmix=True, seed=3, return_tensors="np")
    second = reloaded(text=SENTENCES, cutmix=True, seed=3, return_tensors="np")
    assert first.keys() == second.keys() and all(np.array_equal(first[k], second[k]) for k in first)


def test_remote_code_processor_in_a_fresh_process(tmp_path, processor):
    processor.save_pretrained(tmp_path / "proc")
    expected = processor(text=SENTENCES, cutmix=True, seed=5, return_tensors="np")
    np.savez(tmp_path / "expected.npz", **{k: expected[k] for k in expected})
    script = textwrap.dedent(
        f"""
        import sys, numpy as np
        from transformers import AutoProcessor
        processor = AutoProcessor.from_pretrained({str(tmp_path / "proc")!r}, trust_remote_code=True)
        assert "processing" not in sys.modules and "modeling_vlmixer" not in sys.modules
        assert type(processor).__name__ == "VLMixerProcessor", type(processor)
        assert type(processor).__module__.startswith("transformers_modules"), type(processor).__module__
        out = processor(text={SENTENCES!r}, cutmix=True, seed=5, return_tensors="np")
        expected = np.load({str(tmp_path / "expected.npz")!r})
        assert sorted(out.keys()) == sorted(expected.files)
        for key in expected.files:
            assert np.array_equal(out[key], expected[key]), key
        print("remote processor ok")
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "remote processor ok" in result.stdout


def test_bad_inputs(processor, tokenizer, gallery, records, minilm_path):
    with pytest.raises(ValueError, match=r"text\[1\] is empty"):
        processor(text=["a dog", "  "], cutmix=True)
    with pytest.raises(ValueError, match="Got 2 text entries for 1 region records"):
        processor(text=["a", "b"], regions=[records[0]])
    nan = _record("nan", ["dog"], [0.9], 5)
    nan.features[0, 0] = np.nan
    with pytest.raises(ValueError, match="image_id='nan'.*NaN"):
        processor(text=["a dog"], regions=[nan])
    outside = _record("out", ["dog"], [0.9], 6)
    outside.boxes[0] = [10, 10, 90, 20]
    with pytest.raises(ValueError, match="outside the 64x48 image"):
        processor(text=["a dog"], regions=[outside])
    inverted = _record("inv", ["dog"], [0.9], 7)
    inverted.boxes[0] = [30, 10, 20, 20]
    with pytest.raises(ValueError, match="inverted"):
        processor(text=["a dog"], regions=[inverted])
    wide = RegionFeatures(np.zeros((1, FEATURE_DIM + 1)), [[0, 0, 4, 4]], 64, 48, ["dog"], [0.5], "wide")
    with pytest.raises(ValueError, match=f"expected feature_dim={FEATURE_DIM}"):
        processor(text=["a dog"], regions=[wide])
    counts = RegionFeatures(
        np.zeros((2, FEATURE_DIM)), [[0, 0, 4, 4]], 64, 48, ["dog", "cat"], [0.5, 0.5], "cnt"
    )
    with pytest.raises(ValueError, match="disagree on the number of regions"):
        processor(text=["a dog"], regions=[counts])
    with pytest.raises(ValueError, match="has no visual placeholder token"):
        VLMixerProcessor(
            VLMixerRegionFeatureExtractor(feature_dim=FEATURE_DIM), AutoTokenizer.from_pretrained(minilm_path)
        )
    with pytest.raises(ValueError, match=f"gallery holds {FEATURE_DIM}-d features.*feature_dim=2048"):
        VLMixerProcessor(VLMixerRegionFeatureExtractor(feature_dim=2048), tokenizer, gallery=gallery)
    with pytest.raises(ValueError, match="config.visual_feature_dim=2048"):
        processor.check_model_config(VLMixerConfig(hidden_size=32, num_attention_heads=4))
    with pytest.raises(ValueError, match="config.image_token_id=7"):
        processor.check_model_config(VLMixerConfig(image_token_id=7, visual_feature_dim=FEATURE_DIM))
    no_gallery = VLMixerProcessor(VLMixerRegionFeatureExtractor(feature_dim=FEATURE_DIM), tokenizer)
    with pytest.raises(ValueError, match="cutmix=True needs a patch gallery"):
        no_gallery(text=["a dog"], cutmix=True)
    with pytest.raises(ValueError, match="Unknown concept .unicorn."):
        gallery.concept_id("unicorn")


def test_cutmix_picture_is_a_valid_image(tmp_path, processor, records):
    results = processor.cutmix(SENTENCES, processor.tokenizer, processor.image_token_id, generator=0)
    path = render_cutmix(SENTENCES, results, processor.tokenizer, processor.gallery, tmp_path / "cmc.png")
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 500
    assert [p.name for p in tmp_path.iterdir()] == ["cmc.png"]


def test_cmc_picture_command(tmp_path, processor):
    from modeling_vlmixer.cli import main

    processor.save_pretrained(tmp_path / "proc")
    main(
        [
            "cmc-picture",
            "--processor",
            str(tmp_path / "proc"),
            "--text",
            SENTENCES[0],
            "--text",
            SENTENCES[2],
            "--output",
            str(tmp_path / "pic.png"),
            "--r_cmc",
            "1.0",
        ]
    )
    with Image.open(tmp_path / "pic.png") as image:
        image.verify()
