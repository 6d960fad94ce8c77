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
"""Auto classes for the two tasks transformers has none for: NLVR2-style visual reasoning over an image pair,
and image-text retrieval.

They behave like any transformers Auto class: `register(config_class, model_class)`, and
`from_pretrained(repo, trust_remote_code=True)` loads the class that the checkpoint's `config.auto_map` names
under `"AutoModelForVisualReasoning"` / `"AutoModelForImageTextRetrieval"`.
"""

from collections import OrderedDict

from transformers.models.auto.auto_factory import _BaseAutoModelClass, _LazyAutoMapping
from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES


class AutoModelForVisualReasoning(_BaseAutoModelClass):
    """Loads a model that classifies a sentence against a pair of images (NLVR2)."""

    _model_mapping = _LazyAutoMapping(CONFIG_MAPPING_NAMES, OrderedDict())


class AutoModelForImageTextRetrieval(_BaseAutoModelClass):
    """Loads a model that scores (text, image) pairs and embeds each modality for retrieval."""

    _model_mapping = _LazyAutoMapping(CONFIG_MAPPING_NAMES, OrderedDict())


__all__ = ["AutoModelForImageTextRetrieval", "AutoModelForVisualReasoning"]
