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
"""Pushing a patch gallery to the Hub.

`PatchGallery` is not a transformers object, so it has no `push_to_hub`; [`push_gallery_to_hub`] saves it
(`gallery.safetensors` + `gallery_config.json`) and uploads both files in one commit. It is read back with
`PatchGallery.from_pretrained(repo_id, subfolder=path_in_repo, revision=...)`.

Not Hub remote code: this module may import `huggingface_hub` freely.
"""

from __future__ import annotations

import os
import tempfile

from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi

from .patch_gallery import GALLERY_CONFIG_NAME, GALLERY_WEIGHTS_NAME, PatchGallery


__all__ = ["push_gallery_to_hub"]


def push_gallery_to_hub(
    gallery: PatchGallery,
    repo_id: str,
    *,
    path_in_repo: str = "",
    commit_message: str | None = None,
    commit_description: str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    private: bool | None = None,
    token: str | bool | None = None,
    repo_type: str | None = None,
) -> CommitInfo:
    """Uploads `gallery` to the Hub repository `repo_id` (created if needed) in one commit.

    The gallery is saved to a temporary folder first (streamed in chunks, so a memory-mapped gallery is not
    loaded into memory), then one `HfApi.create_commit` sends both files; `gallery.safetensors` takes the LFS
    path. A gallery already under `path_in_repo` is replaced (both files, in the same commit).

    Args:
        gallery: The gallery to push.
        repo_id: `namespace/name` of the repository.
        path_in_repo: Folder of the gallery inside the repository (`""` = the root; `"gallery"` is where
            `VLMixerProcessor.save_pretrained` puts it next to a processor).
        commit_message: Defaults to `"Upload patch gallery (N patches, C concepts)"`.
        commit_description: Longer description of the commit.
        revision: Branch to commit to (created from `main` if missing); defaults to `main`.
        create_pr: Open a pull request instead of committing to the branch.
        private: Visibility of the repository if it is created.
        token: Hub token (defaults to the saved one / `HF_TOKEN`).
        repo_type: `"model"` (default) or `"dataset"`. `PatchGallery.from_pretrained` reads model
            repositories.

    Returns:
        The `huggingface_hub.CommitInfo` of the commit (`.oid` is the commit sha to pin as `revision`).
    """
    if not isinstance(gallery, PatchGallery):
        raise TypeError(f"push_gallery_to_hub expects a PatchGallery, got {type(gallery).__name__}.")
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, repo_type=repo_type, exist_ok=True).repo_id
    if revision is not None and not create_pr:
        api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
    folder = path_in_repo.strip("/")
    if commit_message is None:
        commit_message = (
            f"Upload patch gallery ({gallery.num_patches} patches, {gallery.num_concepts} concepts)"
        )
    with tempfile.TemporaryDirectory(prefix="vlmixer-gallery-") as tmp_dir:
        gallery.save_pretrained(tmp_dir)
        operations = [
            CommitOperationAdd(
                path_in_repo=f"{folder}/{name}" if folder else name,
                path_or_fileobj=os.path.join(tmp_dir, name),
            )
            for name in (GALLERY_CONFIG_NAME, GALLERY_WEIGHTS_NAME)
        ]
        return api.create_commit(
            repo_id,
            operations,
            commit_message=commit_message,
            commit_description=commit_description,
            revision=revision,
            create_pr=create_pr,
            repo_type=repo_type,
        )
