# Copyright 2026 The VLMixer developers.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Publishing a VLMixer checkpoint to the Hub: model + processor (+ patch gallery) + model card, one commit.

`model.push_to_hub` and `processor.push_to_hub` (transformers' `PushToHubMixin`) each make their own commit
with a generic card. [`push_vlmixer_to_hub`] saves everything into one folder -- the model (safetensors and
its remote code), the processor (tokenizer, feature extractor, `processor_config.json`, its remote code and
the gallery in `gallery/`) and the `README.md` rendered by [`create_model_card`] -- and uploads it as a
single commit, so a revision always holds a model, processor and card that belong together.

Not Hub remote code: this module may import `huggingface_hub` freely.
"""

from __future__ import annotations

import inspect
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import CommitInfo, CommitOperationAdd, CommitOperationDelete, HfApi, ModelCard
from huggingface_hub.utils import filter_repo_objects

from .model_card import create_model_card


__all__ = ["PICKLE_SUFFIXES", "push_vlmixer_to_hub"]

# Files that would need pickle to load: never pushed, and removed from the repository by a push.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# Weight files of an earlier push that this push replaces (e.g. shards of a differently sharded save).
_STALE_WEIGHTS = ["model.safetensors", "model-*-of-*.safetensors", "model.safetensors.index.json"]
_GALLERY_FOLDER = "gallery"


def push_vlmixer_to_hub(
    model: Any,
    processor: Any = None,
    repo_id: str | None = None,
    *,
    card_kwargs: Mapping[str, Any] | None = None,
    model_card: ModelCard | str | None = None,
    commit_message: str | None = None,
    commit_description: str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    private: bool | None = None,
    token: str | bool | None = None,
    save_gallery: bool = True,
    max_shard_size: int | str = "5GB",
    delete_pickles: bool = True,
) -> CommitInfo:
    """Pushes a VLMixer model, its processor (and patch gallery) and a rendered model card in one commit.

    Args:
        model: A `VLMixerPreTrainedModel` (any head). Saved as safetensors with its remote code and an
            `auto_map` covering every VLMixer Auto class.
        processor: The `VLMixerProcessor` (or any object with `save_pretrained`), or `None`. Checked
            against the model config first (`check_model_config`) when it can be.
        repo_id: `namespace/name` of the repository; created if needed.
        card_kwargs: Keyword arguments of [`create_model_card`] (e.g. `eval_results`,
            `pretraining_corpora`, `training`, `base_model`, `model_description`).
        model_card: A ready card (a `ModelCard` or its text) to push instead of rendering one.
        commit_message: Defaults to `"Upload VLMixer model, processor and model card"`.
        commit_description: Longer description of the commit.
        revision: Branch to commit to (created from `main` if missing); defaults to `main`.
        create_pr: Open a pull request instead of committing to the branch.
        private: Visibility of the repository if it is created.
        token: Hub token (defaults to the saved one / `HF_TOKEN`).
        save_gallery: Include the processor's patch gallery (in `gallery/`), replacing any older one.
        max_shard_size: Largest safetensors shard of the model.
        delete_pickles: Delete the repository's pickle-based files (`*.bin`, `*.pt`, ...) in the same
            commit, so that the revision holds safetensors weights only.

    Returns:
        The `huggingface_hub.CommitInfo` of the commit; `.oid` is the commit sha, to pin with
        `from_pretrained(repo_id, revision=oid)`.

    Raises:
        ValueError: If `repo_id` is missing or the processor does not fit the model.
        RuntimeError: If saving produced a pickle-based file.
    """
    if not repo_id:
        raise ValueError("push_vlmixer_to_hub needs a repo_id ('namespace/name').")
    if processor is not None and hasattr(processor, "check_model_config"):
        processor.check_model_config(model.config)

    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    if revision is not None and not create_pr:
        api.create_branch(repo_id, branch=revision, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="vlmixer-push-") as tmp_dir:
        model.save_pretrained(tmp_dir, max_shard_size=max_shard_size)
        pushes_gallery = False
        if processor is not None:
            if "save_gallery" in inspect.signature(processor.save_pretrained).parameters:
                processor.save_pretrained(tmp_dir, save_gallery=save_gallery)
                pushes_gallery = save_gallery and getattr(processor, "gallery", None) is not None
            else:
                processor.save_pretrained(tmp_dir)

        pickles = [
            str(p.relative_to(tmp_dir)) for p in Path(tmp_dir).rglob("*") if p.suffix in PICKLE_SUFFIXES
        ]
        if pickles:
            raise RuntimeError(f"Saving produced pickle-based files {pickles}; only safetensors are pushed.")

        if model_card is None:
            model_card = create_model_card(model, processor, repo_id=repo_id, **dict(card_kwargs or {}))
        elif not isinstance(model_card, ModelCard):
            model_card = ModelCard(str(model_card))
        model_card.save(os.path.join(tmp_dir, "README.md"))

        delete_patterns = list(_STALE_WEIGHTS)
        if delete_pickles:
            delete_patterns += [f"*{suffix}" for suffix in PICKLE_SUFFIXES]
        if pushes_gallery:
            delete_patterns.append(f"{_GALLERY_FOLDER}/*")
        additions = {
            path.relative_to(tmp_dir).as_posix(): path
            for path in sorted(Path(tmp_dir).rglob("*"))
            if path.is_file()
        }
        remote = api.list_repo_files(repo_id, revision=None if create_pr else revision)
        deletions = [
            CommitOperationDelete(path_in_repo=path)
            for path in filter_repo_objects(remote, allow_patterns=delete_patterns)
            if path not in additions and path != ".gitattributes"
        ]
        operations = deletions + [
            CommitOperationAdd(path_in_repo=path_in_repo, path_or_fileobj=str(path))
            for path_in_repo, path in additions.items()
        ]
        # One `create_commit` (not `upload_folder`, which may split a large upload into several commits).
        return api.create_commit(
            repo_id,
            operations,
            commit_message=commit_message or "Upload VLMixer model, processor and model card",
            commit_description=commit_description,
            revision=revision,
            create_pr=create_pr,
        )
