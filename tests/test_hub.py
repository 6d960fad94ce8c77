"""The Hub: push, pull, remote code and model cards, against the test Hub server (`tests/hub_server.py`).

The real `huggingface_hub` client runs unchanged, pointed at a Hub-compatible server on 127.0.0.1 (no machine
here reaches huggingface.co). The model is `VLMixerForPreTraining`, the class a
pre-training run saves.
"""

import base64
import copy
import hashlib
import importlib.util
import json
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import EvalResult, HfApi, ModelCard, hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
from transformers import (
    AutoModel,
    AutoModelForPreTraining,
    AutoProcessor,
    AutoTokenizer,
    Trainer,
    TrainingArguments,
)

from modeling_vlmixer import VLMixerConfig, VLMixerForPreTraining, VLMixerModel
from modeling_vlmixer.hub import push_vlmixer_to_hub
from modeling_vlmixer.model_card import VLMIXER_CITATION, create_model_card
from processing import (
    PatchGallery,
    RegionFeatures,
    VLMixerProcessor,
    VLMixerRegionFeatureExtractor,
    add_image_token,
)
from processing.hub import push_gallery_to_hub


def _load_plugin():
    name = "vlmixer_test_hub_plugin"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("hub_conftest_plugin.py")
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


# The client's LFS upload passes a file object as `data=`, which httpx2 deprecates: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

_plugin = _load_plugin()
hub_server = _plugin.hub_server  # fixtures of tests/hub_conftest_plugin.py
hub = _plugin.hub

FEATURE_DIM = 8
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


# ------------------------------------------------------------------------------------------------ fixtures


def _record(image_id, labels, scores, seed, width=64, height=48):
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
    )


@pytest.fixture(scope="module")
def records():
    return [
        _record("img0", ["dog", "frisbee", "grass"], [0.9, 0.8, 0.5], 0),
        _record("img1", ["giraffe", "traffic light", "dog"], [0.95, 0.7, 0.6], 1),
        _record("img2", ["skateboard", "man"], [0.85, 0.9], 2),
    ]


@pytest.fixture(scope="module")
def processor(minilm_path, records):
    tokenizer = add_image_token(AutoTokenizer.from_pretrained(minilm_path))[0]
    gallery = PatchGallery.build(
        records, feature_dtype="float32", detector="toy-detector", show_progress=False
    )
    extractor = VLMixerRegionFeatureExtractor(
        feature_dim=FEATURE_DIM, max_regions=10, detector="toy-detector"
    )
    return VLMixerProcessor(extractor, tokenizer, gallery=gallery, r_cmc=1.0)


def _tiny_config(processor, **overrides) -> VLMixerConfig:
    settings = dict(
        vocab_size=len(processor.tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=128,
        visual_feature_dim=FEATURE_DIM,
        image_token_id=processor.image_token_id,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return VLMixerConfig(**{**settings, **overrides})


def _tiny_model(processor, seed=0) -> VLMixerForPreTraining:
    torch.manual_seed(seed)
    return VLMixerForPreTraining(_tiny_config(processor)).eval()


def _perturbed(model: VLMixerForPreTraining, seed: int) -> VLMixerForPreTraining:
    other = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return other.eval()


def _batches(processor, records):
    """A CMC batch and an image + text batch, as numpy dicts."""
    cutmix = processor(text=SENTENCES, cutmix=True, seed=5, return_tensors="np")
    image_text = processor(
        text=["a dog with a frisbee", "a giraffe"], regions=records[:2], return_tensors="np"
    )
    return dict(cutmix), dict(image_text)


def _model_inputs(batch):
    return {key: torch.as_tensor(batch[key]) for key in MODEL_KEYS if key in batch}


def _post(url: str, body: bytes, headers: dict | None = None) -> int:
    """POSTs raw bytes and returns the HTTP status."""
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------ the server


def test_server_speaks_the_hub_protocol(hub, tmp_path):
    api = HfApi()
    repo_id = hub.repo_id("protocol")
    url = api.create_repo(repo_id)
    assert url.repo_id == repo_id and url.startswith(hub.url)
    api.create_repo(repo_id, exist_ok=True)  # 409 -> ok
    first = api.list_repo_commits(repo_id)[0].commit_id

    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("v1")
    (folder / "sub" / "weights.safetensors").write_bytes(b"\x00" + bytes(range(256)) * 8)
    (folder / "blob.dat").write_bytes(b"\x00\x01binary")  # binary sample -> LFS, whatever its name
    v1 = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="v1").oid
    assert hub.server.is_lfs(repo_id, "sub/weights.safetensors") and hub.server.is_lfs(repo_id, "blob.dat")
    assert not hub.server.is_lfs(repo_id, "notes.txt")
    weights_sha = _sha256(folder / "sub" / "weights.safetensors")
    assert (weights_sha, 2049) in hub.server.lfs_uploads  # uploaded by an LFS PUT, not inline in the commit

    (folder / "notes.txt").write_text("v2")
    v2 = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="v2").oid
    assert [c.commit_id for c in api.list_repo_commits(repo_id)] == [v2, v1, first]
    assert sorted(api.list_repo_files(repo_id)) == [
        ".gitattributes",
        "blob.dat",
        "notes.txt",
        "sub/weights.safetensors",
    ]
    tree = {entry.path: entry for entry in api.list_repo_tree(repo_id, recursive=True)}
    assert tree["sub/weights.safetensors"].lfs.sha256 == _sha256(folder / "sub" / "weights.safetensors")
    assert [e.path for e in api.list_repo_tree(repo_id, path_in_repo="sub")] == ["sub/weights.safetensors"]

    # Revisions: branch, full sha, short sha; the old revision keeps the old content.
    assert Path(hf_hub_download(repo_id, "notes.txt", revision=v1)).read_text() == "v1"
    assert Path(hf_hub_download(repo_id, "notes.txt", revision=v2[:7])).read_text() == "v2"
    assert Path(snapshot_download(repo_id), "notes.txt").read_text() == "v2"
    assert api.model_info(repo_id, revision=v1).sha == v1
    assert api.file_exists(repo_id, "notes.txt") and not api.file_exists(repo_id, "missing.txt")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(f"{hub.server.user}/no-such-repo", "notes.txt")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo_id, "notes.txt", revision="no-such-branch")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo_id, "missing.txt")

    # Branches, tags and pull requests are revisions too; anonymous reads work on public repositories only.
    api.create_branch(repo_id, branch="dev", revision=v1)
    api.upload_file(path_or_fileobj=b"dev", path_in_repo="notes.txt", repo_id=repo_id, revision="dev")
    api.create_tag(repo_id, tag="v1.0", revision=v1)
    pr = api.upload_file(path_or_fileobj=b"pr", path_in_repo="notes.txt", repo_id=repo_id, create_pr=True)
    assert pr.pr_url is not None and hub.server.read_file(repo_id, "notes.txt", "refs/pr/1") == b"pr"
    assert Path(hf_hub_download(repo_id, "notes.txt", revision="dev")).read_text() == "dev"
    assert Path(hf_hub_download(repo_id, "notes.txt", revision="v1.0")).read_text() == "v1"
    assert hub.server.resolve(repo_id) == v2
    anonymous = HfApi(token=False)
    assert [p.path for p in anonymous.get_paths_info(repo_id, ["notes.txt", "sub"])] == ["notes.txt", "sub"]
    private_id = hub.repo_id("private")
    api.create_repo(private_id, private=True)
    assert api.model_info(private_id).private
    with pytest.raises(RepositoryNotFoundError):
        anonymous.model_info(private_id)

    # Commits are atomic: a commit naming an LFS object that was never uploaded changes nothing.
    lines = [
        {"key": "header", "value": {"summary": "broken"}},
        {
            "key": "file",
            "value": {"path": "notes.txt", "content": base64.b64encode(b"v3").decode(), "encoding": "base64"},
        },
        {"key": "lfsFile", "value": {"path": "big.bin", "algo": "sha256", "oid": "0" * 64, "size": 10}},
    ]
    headers = {"Authorization": f"Bearer {hub.token}", "Content-Type": "application/x-ndjson"}
    body = "".join(json.dumps(line) + "\n" for line in lines).encode()
    assert _post(f"{hub.url}/api/models/{repo_id}/commit/main", body, headers) == 422
    assert hub.server.resolve(repo_id) == v2 and hub.server.read_file(repo_id, "notes.txt") == b"v2"
    # ... and one whose parent is not the head any more is refused.
    lines = [{"key": "header", "value": {"summary": "stale", "parentCommit": v1}}, lines[1]]
    body = "".join(json.dumps(line) + "\n" for line in lines).encode()
    assert _post(f"{hub.url}/api/models/{repo_id}/commit/main", body, headers) == 412
    assert hub.server.resolve(repo_id) == v2
    # Writes need a token.
    assert _post(f"{hub.url}/api/repos/create", b'{"name": "x"}', {"Content-Type": "application/json"}) == 401


# -------------------------------------------------------------------- push + pull, remote code, revisions


REMOTE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np, torch
    from transformers import AutoModel, AutoModelForPreTraining, AutoProcessor
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    args = json.loads(sys.argv[1])
    repo, old = args["repo"], args["old_revision"]
    expected = dict(np.load(args["expected"]))
    keys = {MODEL_KEYS!r}

    def inputs(prefix):
        return {{k: torch.as_tensor(expected[prefix + k]) for k in keys if prefix + k in expected}}

    mlm = AutoModelForPreTraining.from_pretrained(repo, trust_remote_code=True).eval()
    encoder = AutoModel.from_pretrained(repo, trust_remote_code=True).eval()
    old_mlm = AutoModelForPreTraining.from_pretrained(repo, revision=old, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(repo, trust_remote_code=True)
    if processor.gallery is None:  # until VLMixerProcessor.from_pretrained reads galleries from the Hub
        PatchGallery = get_class_from_dynamic_module("patch_gallery.PatchGallery", repo)
        processor.set_gallery(PatchGallery.from_pretrained(repo, subfolder="gallery"))
    RegionFeatures = get_class_from_dynamic_module("feature_extraction_vlmixer.RegionFeatures", repo)

    assert "modeling_vlmixer" not in sys.modules and "processing" not in sys.modules, "package imported"
    for obj in (mlm, encoder, old_mlm, processor, processor.gallery):
        assert type(obj).__module__.startswith("transformers_modules"), type(obj).__module__
    assert type(mlm).__name__ == "VLMixerForPreTraining" and type(encoder).__name__ == "VLMixerModel"

    cutmix = processor(text={SENTENCES!r}, cutmix=True, seed=5, return_tensors="np")
    records = [RegionFeatures(**r) for r in json.loads(open(args["records"]).read())]
    image_text = processor(text=["a dog with a frisbee", "a giraffe"], regions=records, return_tensors="np")
    for prefix, batch in (("cutmix.", cutmix), ("image_text.", image_text)):
        assert sorted(prefix + k for k in batch) == sorted(k for k in expected if k.startswith(prefix)), prefix
        for key in batch:
            assert np.array_equal(batch[key], expected[prefix + key]), prefix + key

    with torch.no_grad():
        for prefix in ("cutmix.", "image_text."):
            assert torch.equal(mlm(**inputs(prefix)).logits, torch.as_tensor(expected["out." + prefix + "logits"]))
            assert torch.equal(old_mlm(**inputs(prefix)).logits, torch.as_tensor(expected["out." + prefix + "old_logits"]))
            hidden = encoder(**inputs(prefix)).last_hidden_state
            assert torch.equal(hidden, torch.as_tensor(expected["out." + prefix + "hidden"]))
    print("remote code ok")
    """
)


def test_push_model_processor_gallery_and_card_then_load(hub, processor, records, tmp_path):
    api = HfApi()
    repo_id = hub.repo_id("vlmixer-tiny")
    old_model = _tiny_model(processor, seed=0)
    card_kwargs = dict(
        eval_results=[
            EvalResult(
                task_type="fill-mask",
                dataset_type="toy-captions",
                dataset_name="Toy captions",
                dataset_split="validation",
                metric_type="accuracy",
                metric_name="MLM accuracy",
                metric_value=0.125,
            )
        ],
        pretraining_corpora=[
            {
                "name": "Toy images",
                "kind": "image-only",
                "size": "3 images",
                "description": "detector regions",
            },
            {"name": "Toy sentences", "kind": "text-only", "size": "3 sentences"},
        ],
        training={"steps": 0, "note": "random initialization (test)"},
    )
    old = push_vlmixer_to_hub(old_model, processor, repo_id, card_kwargs=card_kwargs, commit_message="v1").oid

    # A pickle-based file slips into the repository; the next push removes it in the same commit.
    api.upload_file(path_or_fileobj=b"\x80\x04pickle", path_in_repo="pytorch_model.bin", repo_id=repo_id)
    assert "pytorch_model.bin" in hub.server.list_files(repo_id)
    model = _perturbed(old_model, seed=1)
    with pytest.raises(ValueError, match="visual_feature_dim"):  # a processor that does not fit is refused
        wrong = VLMixerForPreTraining(_tiny_config(processor, visual_feature_dim=FEATURE_DIM + 1))
        push_vlmixer_to_hub(wrong, processor, repo_id)
    new = push_vlmixer_to_hub(model, processor, repo_id, card_kwargs=card_kwargs, commit_message="v2").oid
    assert hub.server.commit_history(repo_id)[0]["title"] == "v2"  # one commit for model, processor and card

    # What landed: safetensors only, LFS for the weights and the gallery, remote code, a card.
    files = hub.server.list_files(repo_id)
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl"))], files
    expected_files = {
        "README.md",
        "config.json",
        "model.safetensors",
        "configuration_vlmixer.py",
        "modeling_vlmixer.py",
        "processor_config.json",
        "processing_vlmixer.py",
        "patch_gallery.py",
        "cross_modal_cutmix.py",
        "feature_extraction_vlmixer.py",
        "tokenizer.json",
        "tokenizer_config.json",
        "gallery/gallery.safetensors",
        "gallery/gallery_config.json",
    }
    assert expected_files <= set(files), expected_files - set(files)
    assert hub.server.is_lfs(repo_id, "model.safetensors") and hub.server.is_lfs(
        repo_id, "gallery/gallery.safetensors"
    )
    weights = hub.server.read_file(repo_id, "model.safetensors")
    assert (hashlib.sha256(weights).hexdigest(), len(weights)) in hub.server.lfs_uploads
    config = json.loads(hub.server.read_file(repo_id, "config.json"))
    assert config["auto_map"]["AutoModelForPreTraining"] == "modeling_vlmixer.VLMixerForPreTraining"

    # The card, loaded from the server, parses: metadata, model-index, provenance, citation.
    card = ModelCard.load(repo_id)
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "fill-mask"
    assert "vlmixer" in card.data.tags and "custom_code" in card.data.tags
    assert card.data.model_name == repo_id.split("/")[-1]
    assert (
        card.data.eval_results[0].metric_value == 0.125
        and card.data.eval_results[0].dataset_type == "toy-captions"
    )
    assert "`toy-detector`" in card.text and "| Feature width | 8 |" in card.text and "`xyxy`" in card.text
    assert "Toy images | image-only" in card.text and VLMIXER_CITATION in card.text
    assert api.model_info(repo_id).card_data.eval_results[0].metric_name == "MLM accuracy"

    # Expected outputs of the originals.
    cutmix, image_text = _batches(processor, records)
    expected = {}
    with torch.no_grad():
        for prefix, batch in (("cutmix.", cutmix), ("image_text.", image_text)):
            expected.update({prefix + k: v for k, v in batch.items()})
            inputs = _model_inputs(batch)
            expected["out." + prefix + "logits"] = model(**inputs).logits.numpy()
            expected["out." + prefix + "old_logits"] = old_model(**inputs).logits.numpy()
            expected["out." + prefix + "hidden"] = model.vlmixer(**inputs).last_hidden_state.numpy()
    assert not np.array_equal(expected["out.cutmix.logits"], expected["out.cutmix.old_logits"])
    np.savez(tmp_path / "expected.npz", **expected)
    (tmp_path / "records.json").write_text(
        json.dumps(
            [
                {
                    "features": r.features.tolist(),
                    "boxes": r.boxes.tolist(),
                    "image_width": r.image_width,
                    "image_height": r.image_height,
                    "labels": r.labels,
                    "scores": r.scores.tolist(),
                    "image_id": r.image_id,
                }
                for r in records[:2]
            ]
        )
    )

    # 1. A fresh process, empty HF_HOME, package not imported: trust_remote_code from the Hub.
    script = REMOTE_SCRIPT.format(MODEL_KEYS=MODEL_KEYS, SENTENCES=SENTENCES)
    args = json.dumps(
        {
            "repo": repo_id,
            "old_revision": old,
            "expected": str(tmp_path / "expected.npz"),
            "records": str(tmp_path / "records.json"),
        }
    )
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", script, args],
        cwd=workdir,
        env=hub.subprocess_env(hf_home=tmp_path / "fresh_home"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "remote code ok" in result.stdout

    # 2. With the package imported, no trust_remote_code: the registered classes load the same checkpoint.
    loaded = AutoModelForPreTraining.from_pretrained(repo_id).eval()
    encoder = AutoModel.from_pretrained(repo_id).eval()
    pinned = AutoModelForPreTraining.from_pretrained(repo_id, revision=old).eval()  # 3. an older revision
    assert (
        type(loaded) is VLMixerForPreTraining
        and type(encoder) is VLMixerModel
        and type(pinned) is VLMixerForPreTraining
    )
    reloaded_processor = AutoProcessor.from_pretrained(repo_id)
    assert type(reloaded_processor) is VLMixerProcessor
    gallery = PatchGallery.from_pretrained(repo_id, subfolder="gallery", revision=old)
    assert gallery.detector == "toy-detector"
    np.testing.assert_array_equal(np.asarray(gallery.features), np.asarray(processor.gallery.features))
    reloaded_processor.set_gallery(gallery)
    again_cutmix, again_image_text = _batches(reloaded_processor, records)
    for prefix, batch in (("cutmix.", again_cutmix), ("image_text.", again_image_text)):
        assert all(np.array_equal(v, expected[prefix + k]) for k, v in batch.items())
        inputs = _model_inputs(batch)
        with torch.no_grad():
            assert torch.equal(loaded(**inputs).logits, torch.as_tensor(expected["out." + prefix + "logits"]))
            assert torch.equal(
                pinned(**inputs).logits, torch.as_tensor(expected["out." + prefix + "old_logits"])
            )
            assert torch.equal(
                encoder(**inputs).last_hidden_state, torch.as_tensor(expected["out." + prefix + "hidden"])
            )
    assert new != old and api.model_info(repo_id).sha == new


def test_processor_from_hub_loads_its_gallery(hub, processor):
    repo_id = hub.repo_id("processor-gallery")
    processor.push_to_hub(repo_id)
    reloaded = AutoProcessor.from_pretrained(repo_id)
    assert reloaded.gallery is not None and reloaded.gallery.num_patches == processor.gallery.num_patches


def test_mixin_pushes_and_gallery_helper(hub, processor, records):
    api = HfApi()
    # transformers' push_to_hub: the processor commit carries the gallery/ folder and the remote code.
    repo_id = hub.repo_id("mixins")
    processor.push_to_hub(repo_id, commit_message="processor")
    files = set(hub.server.list_files(repo_id))
    assert {
        "processor_config.json",
        "processing_vlmixer.py",
        "gallery/gallery.safetensors",
        "gallery/gallery_config.json",
    } <= files
    model = _tiny_model(processor, seed=3)
    model.push_to_hub(repo_id, commit_message="model")
    assert {"model.safetensors", "config.json", "modeling_vlmixer.py"} <= set(hub.server.list_files(repo_id))
    assert hub.server.is_lfs(repo_id, "model.safetensors")
    reloaded = AutoModelForPreTraining.from_pretrained(repo_id)
    assert all(
        torch.equal(a, b)
        for a, b in zip(reloaded.state_dict().values(), model.state_dict().values(), strict=True)
    )

    # push_gallery_to_hub: one commit, read back by repo id and pinned revision.
    gallery_repo = hub.repo_id("gallery")
    first = push_gallery_to_hub(processor.gallery, gallery_repo).oid
    smaller = PatchGallery.build(records[:1], feature_dtype="float32", show_progress=False)
    second = push_gallery_to_hub(smaller, gallery_repo, commit_message="smaller gallery").oid
    assert sorted(hub.server.list_files(gallery_repo)) == [
        ".gitattributes",
        "gallery.safetensors",
        "gallery_config.json",
    ]
    assert hub.server.commit_history(gallery_repo)[0]["title"] == "smaller gallery"
    assert PatchGallery.from_pretrained(gallery_repo).num_patches == smaller.num_patches
    old = PatchGallery.from_pretrained(gallery_repo, revision=first)
    assert old.num_patches == processor.gallery.num_patches and old.concepts == processor.gallery.concepts
    assert torch.equal(old.get_features([0, 1]), processor.gallery.get_features([0, 1]))
    assert PatchGallery.from_pretrained(gallery_repo, revision=second).num_patches == smaller.num_patches
    push_gallery_to_hub(smaller, repo_id, path_in_repo="gallery", commit_message="gallery in a subfolder")
    assert PatchGallery.from_pretrained(repo_id, subfolder="gallery").num_patches == smaller.num_patches
    with pytest.raises(ValueError, match="Could not find a patch gallery"):
        PatchGallery.from_pretrained(f"{hub.server.user}/no-such-gallery")
    assert api.list_repo_commits(gallery_repo)[0].title == "smaller gallery"


def test_create_model_card_offline_rendering(processor):
    model = _tiny_model(processor)
    card = create_model_card(
        model,
        processor,
        repo_id="someone/vlmixer-tiny",
        base_model="bert-base-uncased",
        eval_results=[
            {
                "task_type": "visual-question-answering",
                "dataset_type": "vqa_v2",
                "dataset_name": "VQA v2",
                "metric_type": "accuracy",
                "metric_value": 70.1,
            }
        ],
    )
    data = card.data.to_dict()
    assert data["base_model"] == "bert-base-uncased" and data["model-index"][0]["name"] == "vlmixer-tiny"
    assert data["model-index"][0]["results"][0]["metrics"][0]["value"] == 70.1
    assert "72.60" in card.text  # the paper's number, labelled as such, never in model-index
    assert "not** results of this checkpoint" in card.text
    bare = create_model_card(config=model.config, include_paper_results=False)
    assert "No evaluation results were recorded" in bare.text and "72.60" not in bare.text
    assert "No processor was given" in bare.text
    with pytest.raises(ValueError, match="lacks"):
        create_model_card(model, eval_results=[{"task_type": "fill-mask"}])


# --------------------------------------------------------------------------------------------- Trainer


class _RandomMLMData(torch.utils.data.Dataset):
    """Tiny random MLM batches with two visual slots per sequence."""

    def __init__(self, config, size=8, length=12, seed=0):
        generator = torch.Generator().manual_seed(seed)
        self.items = []
        for _ in range(size):
            input_ids = torch.randint(1000, 2000, (length,), generator=generator)
            input_ids[0], input_ids[-1] = 101, 102
            input_ids[3:5] = config.image_token_id
            labels = torch.full((length,), -100)
            labels[1:6] = torch.randint(1000, 2000, (5,), generator=generator)
            xy = torch.rand(2, 2, generator=generator) * 0.5
            boxes = torch.cat([xy, xy + 0.4], dim=1)
            self.items.append(
                {
                    "input_ids": input_ids,
                    "attention_mask": torch.ones(length, dtype=torch.long),
                    "visual_features": torch.randn(2, config.visual_feature_dim, generator=generator),
                    "visual_boxes": boxes,
                    "labels": labels,
                }
            )

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def test_trainer_push_to_hub(hub, processor, tmp_path):
    repo_id = hub.repo_id("trainer")
    model = _tiny_model(processor, seed=4).train()
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        push_to_hub=True,
        hub_model_id=repo_id,
        report_to=[],
        max_steps=4,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        save_strategy="steps",
        save_steps=2,
        save_total_limit=1,
        logging_steps=2,
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=_RandomMLMData(model.config), processing_class=processor
    )
    trainer.train()
    trainer.push_to_hub(commit_message="End of training")

    files = set(hub.server.list_files(repo_id))
    assert {
        "model.safetensors",
        "README.md",
        "config.json",
        "modeling_vlmixer.py",
        "processor_config.json",
    } <= files
    assert hub.server.is_lfs(repo_id, "model.safetensors")
    pickled_weights = [f for f in files if f.endswith(".bin") and f != "training_args.bin"]
    assert not pickled_weights, files  # weights as safetensors only; Trainer also pushes training_args.bin
    assert ModelCard.load(repo_id).data.library_name == "transformers"  # Trainer's card
    titles = [c["title"] for c in hub.server.commit_history(repo_id)]
    assert titles[0] == "End of training" and any(t.startswith("Training in progress") for t in titles)
    pushed = AutoModelForPreTraining.from_pretrained(repo_id)
    trained = {k: v.detach().cpu() for k, v in trainer.model.state_dict().items()}
    assert all(torch.equal(pushed.state_dict()[k], v) for k, v in trained.items())

    # Publishing the trained model: VLMixer card, and training_args.bin (a pickle) removed, in one commit.
    push_vlmixer_to_hub(
        trainer.model, processor, repo_id, card_kwargs={"training": {"steps": 4}}, commit_message="Publish"
    )
    files = set(hub.server.list_files(repo_id))
    assert "training_args.bin" not in files and "model.safetensors" in files
    card = ModelCard.load(repo_id)
    assert "vlmixer" in card.data.tags and "| steps | 4 |" in card.text
