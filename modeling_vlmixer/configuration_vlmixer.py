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
"""VLMixer model configuration."""

from huggingface_hub.dataclasses import strict
from transformers.configuration_utils import PreTrainedConfig


# Classes a checkpoint can be loaded as with `trust_remote_code=True`; written into every saved
# `config.json` so that any head can be loaded from any VLMixer checkpoint, whichever class saved it.
VLMIXER_AUTO_MAP = {
    "AutoConfig": "configuration_vlmixer.VLMixerConfig",
    "AutoModel": "modeling_vlmixer.VLMixerModel",
    "AutoModelForMaskedLM": "modeling_vlmixer.VLMixerForMaskedLM",
    "AutoModelForPreTraining": "modeling_vlmixer.VLMixerForPreTraining",
    "AutoModelForVisualQuestionAnswering": "modeling_vlmixer.VLMixerForQuestionAnswering",
    "AutoModelForVisualReasoning": "modeling_vlmixer.VLMixerForVisualReasoning",
    "AutoModelForImageTextRetrieval": "modeling_vlmixer.VLMixerForImageTextRetrieval",
}


@strict
class VLMixerConfig(PreTrainedConfig):
    r"""
    Configuration of a [`VLMixerModel`]: a single-stream BERT encoder whose input sequence mixes word
    tokens and visual slots (detector regions). The defaults are BERT-base (`bert-base-uncased`) with
    2048-d region features, as in the VLMixer paper (Wang et al., ICML 2022).

    Args:
        vocab_size (`int`, defaults to 30522): size of the word-piece vocabulary.
        hidden_size (`int`, defaults to 768): width of the encoder.
        num_hidden_layers (`int`, defaults to 12): number of transformer layers.
        num_attention_heads (`int`, defaults to 12): attention heads per layer.
        intermediate_size (`int`, defaults to 3072): width of the feed-forward layers.
        hidden_act (`str`, defaults to `"gelu"`): activation of the feed-forward layers.
        hidden_dropout_prob (`float`, defaults to 0.1): dropout on embeddings and residual branches.
        attention_probs_dropout_prob (`float`, defaults to 0.1): dropout on attention probabilities.
        max_position_embeddings (`int`, defaults to 512): number of learned position embeddings.
        type_vocab_size (`int`, defaults to 2): number of segments (0 = sentence, 1 = tags and regions).
        initializer_range (`float`, defaults to 0.02): std of the normal weight initialization.
        layer_norm_eps (`float`, defaults to 1e-12): epsilon of every LayerNorm.
        pad_token_id (`int`, defaults to 0): id of `[PAD]`.
        image_token_id (`int`, defaults to 1): id of the visual placeholder token that marks a visual
            slot in `input_ids` (`[IMG]`; in the BERT vocabulary it takes the slot of `[unused0]`).
        visual_feature_dim (`int`, defaults to 2048): width of the detector region features.
        visual_box_dim (`int`, defaults to 7): width of the box geometry vector
            `(x1, y1, x2, y2, w, h, area)` computed from normalized boxes.
        contrastive_dim (`int`, defaults to 256): width of the projection of the pooled `[CLS]` state that
            VALP's contrastive loss compares.
        contrastive_temperature (`float`, defaults to 0.1): temperature tau of the contrastive loss.
        classifier_dropout (`float`, *optional*): dropout of the task heads (falls back to
            `hidden_dropout_prob`).
        tie_word_embeddings (`bool`, defaults to `True`): tie the MLM decoder to the word embeddings.

    Example:

    ```python
    >>> from modeling_vlmixer import VLMixerConfig, VLMixerModel

    >>> configuration = VLMixerConfig()
    >>> model = VLMixerModel(configuration)
    ```"""

    model_type = "vlmixer"

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.1
    attention_probs_dropout_prob: float | int = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    image_token_id: int = 1
    visual_feature_dim: int = 2048
    visual_box_dim: int = 7
    contrastive_dim: int = 256
    contrastive_temperature: float = 0.1
    classifier_dropout: float | int | None = None
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.auto_map = {**VLMIXER_AUTO_MAP, **(getattr(self, "auto_map", None) or {})}

    def validate_architecture(self):
        """Checks that the sizes fit together; called by `@strict` validation."""
        super().validate_architecture()
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads "
                f"({self.num_attention_heads})."
            )
        if self.visual_feature_dim <= 0:
            raise ValueError(f"visual_feature_dim must be positive, got {self.visual_feature_dim}.")
        if self.visual_box_dim != 7:
            raise ValueError(
                f"visual_box_dim must be 7 (x1, y1, x2, y2, w, h, area), got {self.visual_box_dim}."
            )
        if not 0 <= self.image_token_id < self.vocab_size:
            raise ValueError(
                f"image_token_id ({self.image_token_id}) must be a token of the vocabulary "
                f"[0, {self.vocab_size})."
            )
        if self.contrastive_temperature <= 0:
            raise ValueError(f"contrastive_temperature must be positive, got {self.contrastive_temperature}.")
        if self.image_token_id == self.pad_token_id:
            raise ValueError(f"image_token_id and pad_token_id must differ, both are {self.image_token_id}.")


# Saving the config copies this file beside config.json for `trust_remote_code` loading.
VLMixerConfig.register_for_auto_class("AutoConfig")


__all__ = ["VLMixerConfig", "VLMIXER_AUTO_MAP"]
