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
"""PyTorch VLMixer model: a single-stream BERT encoder over word tokens and visual slots.

One sequence representation covers every input: `input_ids` carries `config.image_token_id` at each
visual slot, and `visual_features` / `visual_boxes` hold one row per slot, in order. Image+text inputs
append the regions after the text; cross-modal CutMix puts them inline, in place of the words they
replace. The model scatters the visual embeddings into the slots, then runs a BERT encoder.

This file is copied to the Hub as remote code: it imports only torch, transformers and its siblings.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import BCEWithLogitsLoss, CrossEntropyLoss
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    MaskedLMOutput,
    SequenceClassifierOutput,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs, logging
from transformers.utils.generic import can_return_tuple
from transformers.utils.output_capturing import capture_outputs

from .configuration_vlmixer import VLMixerConfig
from .losses import contrastive_loss, masked_lm_loss


logger = logging.get_logger(__name__)


def box_geometry(boxes: torch.Tensor) -> torch.Tensor:
    """Geometry vector of normalized boxes.

    Args:
        boxes: `(..., 4)` boxes `(x1, y1, x2, y2)` normalized by the image width and height, in [0, 1].

    Returns:
        `(..., 7)` tensor `(x1, y1, x2, y2, w, h, area)` with `w = x2 - x1`, `h = y2 - y1`, `area = w * h`.
    """
    width = boxes[..., 2] - boxes[..., 0]
    height = boxes[..., 3] - boxes[..., 1]
    return torch.cat([boxes, width[..., None], height[..., None], (width * height)[..., None]], dim=-1)


class VLMixerEmbeddings(nn.Module):
    """Word (or visual), position and segment embeddings, summed, normalized and dropped out as in BERT."""

    def __init__(self, config: VLMixerConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(
            config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id
        )
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)

        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.position_ids = nn.Buffer(
            torch.arange(config.max_position_embeddings).expand((1, -1)), persistent=False
        )

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
    ) -> torch.Tensor:
        """
        Args:
            inputs_embeds: `(batch, seq_len, hidden)` word embeddings with the visual slots already filled.
            token_type_ids: `(batch, seq_len)` segment ids; zeros when omitted.
            position_ids: `(batch, seq_len)` position ids; `0..seq_len-1` when omitted.
        """
        batch_size, seq_length = inputs_embeds.shape[:2]
        if position_ids is None:
            position_ids = self.position_ids[:, :seq_length]
        if token_type_ids is None:
            token_type_ids = torch.zeros(
                (batch_size, seq_length), dtype=torch.long, device=inputs_embeds.device
            )
        embeddings = inputs_embeds + self.token_type_embeddings(token_type_ids)
        embeddings = embeddings + self.position_embeddings(position_ids)
        embeddings = self.LayerNorm(embeddings)
        return self.dropout(embeddings)


class VLMixerVisualEmbeddings(nn.Module):
    """Embeds detector regions: `LayerNorm(W_f f) + LayerNorm(W_b g(box))`.

    The result takes the place of the word embedding at a visual slot; position and segment
    embeddings are added afterwards by [`VLMixerEmbeddings`], as for any token.
    """

    def __init__(self, config: VLMixerConfig):
        super().__init__()
        self.feature_projection = nn.Linear(config.visual_feature_dim, config.hidden_size)
        self.feature_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.box_projection = nn.Linear(config.visual_box_dim, config.hidden_size)
        self.box_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, features: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """
        Args:
            features: `(num_regions, visual_feature_dim)` region features.
            boxes: `(num_regions, 4)` normalized `(x1, y1, x2, y2)` boxes.

        Returns:
            `(num_regions, hidden_size)` visual token embeddings.
        """
        dtype = self.feature_projection.weight.dtype
        feature_embeds = self.feature_layer_norm(self.feature_projection(features.to(dtype)))
        box_embeds = self.box_layer_norm(self.box_projection(box_geometry(boxes.to(dtype))))
        return feature_embeds + box_embeds


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Unpack[TransformersKwargs],
) -> tuple[torch.Tensor, torch.Tensor]:
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value)
    attn_output = attn_output.transpose(1, 2).contiguous()
    return attn_output, attn_weights


class VLMixerSelfAttention(nn.Module):
    def __init__(self, config: VLMixerConfig):
        super().__init__()
        self.config = config
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.all_head_size = self.num_attention_heads * self.attention_head_size
        self.scaling = self.attention_head_size**-0.5
        self.is_causal = False

        self.query = nn.Linear(config.hidden_size, self.all_head_size)
        self.key = nn.Linear(config.hidden_size, self.all_head_size)
        self.value = nn.Linear(config.hidden_size, self.all_head_size)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.attention_head_size)

        query_layer = self.query(hidden_states).view(hidden_shape).transpose(1, 2)
        key_layer = self.key(hidden_states).view(hidden_shape).transpose(1, 2)
        value_layer = self.value(hidden_states).view(hidden_shape).transpose(1, 2)

        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self,
            query_layer,
            key_layer,
            value_layer,
            attention_mask,
            dropout=0.0 if not self.training else self.dropout.p,
            scaling=self.scaling,
            **kwargs,
        )
        attn_output = attn_output.reshape(*input_shape, -1).contiguous()
        return attn_output, attn_weights


class VLMixerSelfOutput(nn.Module):
    def __init__(self, config: VLMixerConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dropout(self.dense(hidden_states))
        return self.LayerNorm(hidden_states + input_tensor)


class VLMixerAttention(nn.Module):
    def __init__(self, config: VLMixerConfig):
        super().__init__()
        self.self = VLMixerSelfAttention(config)
        self.output = VLMixerSelfOutput(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attention_output, attn_weights = self.self(hidden_states, attention_mask=attention_mask, **kwargs)
        return self.output(attention_output, hidden_states), attn_weights


class VLMixerIntermediate(nn.Module):
    def __init__(self, config: VLMixerConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = ACT2FN[config.hidden_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(hidden_states))


class VLMixerOutput(nn.Module):
    def __init__(self, config: VLMixerConfig):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dropout(self.dense(hidden_states))
        return self.LayerNorm(hidden_states + input_tensor)


class VLMixerLayer(GradientCheckpointingLayer):
    def __init__(self, config: VLMixerConfig):
        super().__init__()
        self.attention = VLMixerAttention(config)
        self.intermediate = VLMixerIntermediate(config)
        self.output = VLMixerOutput(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        attention_output, _ = self.attention(hidden_states, attention_mask, **kwargs)
        return self.output(self.intermediate(attention_output), attention_output)


class VLMixerEncoder(nn.Module):
    def __init__(self, config: VLMixerConfig):
        super().__init__()
        self.config = config
        self.layer = nn.ModuleList([VLMixerLayer(config) for _ in range(config.num_hidden_layers)])

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        for layer_module in self.layer:
            hidden_states = layer_module(hidden_states, attention_mask, **kwargs)
        return hidden_states


class VLMixerPooler(nn.Module):
    """Pools the sequence by the `[CLS]` state: `tanh(W h_0 + b)`."""

    def __init__(self, config: VLMixerConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden_states[:, 0]))


class VLMixerPredictionHeadTransform(nn.Module):
    def __init__(self, config: VLMixerConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = ACT2FN[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))


class VLMixerLMPredictionHead(nn.Module):
    """Word-piece prediction head; its decoder weight is tied to the word embeddings."""

    def __init__(self, config: VLMixerConfig):
        super().__init__()
        self.transform = VLMixerPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=True)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(hidden_states))


class VLMixerOnlyMLMHead(nn.Module):
    def __init__(self, config: VLMixerConfig):
        super().__init__()
        self.predictions = VLMixerLMPredictionHead(config)

    def forward(self, sequence_output: torch.Tensor) -> torch.Tensor:
        return self.predictions(sequence_output)


class VLMixerPreTrainedModel(PreTrainedModel):
    config_class = VLMixerConfig
    config: VLMixerConfig
    base_model_prefix = "vlmixer"
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["VLMixerEmbeddings", "VLMixerVisualEmbeddings", "VLMixerLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_record_outputs = {
        "hidden_states": VLMixerLayer,
        "attentions": VLMixerSelfAttention,
    }

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, VLMixerLMPredictionHead):
            init.zeros_(module.bias)
        elif isinstance(module, VLMixerEmbeddings):
            init.copy_(module.position_ids, torch.arange(module.position_ids.shape[-1]).expand((1, -1)))


class VLMixerModel(VLMixerPreTrainedModel):
    """The bare VLMixer encoder, returning hidden states and the pooled `[CLS]` state.

    Inputs follow one representation for every case: `input_ids` holds `config.image_token_id` at each
    visual slot and row `b` of `visual_features` / `visual_boxes` holds, in order, one region per slot of
    sequence `b` (rows after the last slot of a sequence are padding and ignored).
    """

    def __init__(self, config: VLMixerConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.config = config
        self.gradient_checkpointing = False

        self.embeddings = VLMixerEmbeddings(config)
        self.visual_embeddings = VLMixerVisualEmbeddings(config)
        self.encoder = VLMixerEncoder(config)
        self.pooler = VLMixerPooler(config) if add_pooling_layer else None

        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def check_visual_inputs(
        self,
        input_ids: torch.LongTensor,
        visual_features: torch.Tensor | None,
        visual_boxes: torch.Tensor | None,
    ) -> torch.Tensor:
        """Validates the visual inputs against the slots of `input_ids`.

        Args:
            input_ids: `(batch, seq_len)` token ids with `config.image_token_id` at the visual slots.
            visual_features: `(batch, num_rows, visual_feature_dim)` region features, or `None`.
            visual_boxes: `(batch, num_rows, 4)` normalized `(x1, y1, x2, y2)` boxes, or `None`.

        Returns:
            `(batch,)` number of visual slots of each sequence.

        Raises:
            ValueError: naming the input and what was expected, when shapes or counts disagree, features
                or boxes are not finite, or boxes lie outside [0, 1] or are inverted.
        """
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape (batch, seq_len), got {tuple(input_ids.shape)}.")
        slots_per_row = (input_ids == self.config.image_token_id).sum(dim=1)
        if visual_features is None and visual_boxes is None:
            if bool(slots_per_row.any()):
                raise ValueError(
                    f"input_ids contains {int(slots_per_row.sum())} visual slots (image_token_id="
                    f"{self.config.image_token_id}) but no visual_features / visual_boxes were given."
                )
            return slots_per_row
        if visual_features is None or visual_boxes is None:
            missing = "visual_boxes" if visual_boxes is None else "visual_features"
            raise ValueError(f"visual_features and visual_boxes go together; {missing} is missing.")

        batch_size = input_ids.shape[0]
        feature_dim = self.config.visual_feature_dim
        if visual_features.dim() != 3 or visual_features.shape[0] != batch_size:
            raise ValueError(
                f"visual_features must have shape (batch={batch_size}, num_rows, {feature_dim}), "
                f"got {tuple(visual_features.shape)}."
            )
        if visual_features.shape[-1] != feature_dim:
            raise ValueError(
                f"visual_features has feature width {visual_features.shape[-1]}, but this model expects "
                f"config.visual_feature_dim={feature_dim}."
            )
        num_rows = visual_features.shape[1]
        if tuple(visual_boxes.shape) != (batch_size, num_rows, 4):
            raise ValueError(
                f"visual_boxes must have shape (batch={batch_size}, num_rows={num_rows}, 4) to match "
                f"visual_features, got {tuple(visual_boxes.shape)}."
            )
        too_many = slots_per_row > num_rows
        inverted = (visual_boxes[..., 2] < visual_boxes[..., 0]) | (
            visual_boxes[..., 3] < visual_boxes[..., 1]
        )
        # All value checks in one reduction, so valid inputs cost a single host synchronization.
        problems = torch.stack(
            [
                too_many.any(),
                ~torch.isfinite(visual_features).all(),
                ~torch.isfinite(visual_boxes).all(),
                ((visual_boxes < 0) | (visual_boxes > 1)).any(),
                inverted.any(),
            ]
        )
        if not bool(problems.any()):
            return slots_per_row
        if bool(problems[0]):
            row = int(too_many.nonzero()[0, 0])
            raise ValueError(
                f"Sequence {row} of input_ids has {int(slots_per_row[row])} visual slots but visual_features "
                f"has only {num_rows} rows per sequence: every slot needs one row."
            )
        if bool(problems[1]):
            raise ValueError("visual_features contains NaN or infinite values.")
        if bool(problems[2]):
            raise ValueError("visual_boxes contains NaN or infinite values.")
        if bool(problems[3]):
            raise ValueError(
                "visual_boxes must be normalized to [0, 1] by the image width and height (x1, y1, x2, y2); "
                f"got values in [{float(visual_boxes.min()):.4g}, {float(visual_boxes.max()):.4g}]."
            )
        raise ValueError("visual_boxes has inverted boxes: expected x2 >= x1 and y2 >= y1.")

    def embed_inputs(
        self,
        input_ids: torch.LongTensor,
        visual_features: torch.Tensor | None = None,
        visual_boxes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Word embeddings of `input_ids` with the visual embeddings scattered into the visual slots.

        Returns:
            `(batch, seq_len, hidden_size)` input embeddings (before position and segment embeddings).
        """
        slots_per_row = self.check_visual_inputs(input_ids, visual_features, visual_boxes)
        inputs_embeds = self.embeddings.word_embeddings(input_ids)
        if visual_features is None or not bool(slots_per_row.any()):
            return inputs_embeds
        # Row r of sequence b is used iff r < number of slots of b; used rows in row-major order line up
        # with the slots of `input_ids` in row-major order.
        num_rows = visual_features.shape[1]
        if bool((slots_per_row == num_rows).all()):
            features, boxes = visual_features.flatten(0, 1), visual_boxes.flatten(0, 1)
        else:
            row_ids = torch.arange(num_rows, device=visual_features.device)
            used_rows = row_ids[None, :] < slots_per_row[:, None].to(visual_features.device)
            features, boxes = visual_features[used_rows], visual_boxes[used_rows]
        visual_embeds = self.visual_embeddings(features, boxes)
        # index_copy rather than masked_scatter: same result, a much cheaper backward.
        slot_positions = (input_ids == self.config.image_token_id).flatten().nonzero().squeeze(-1)
        flat_embeds = inputs_embeds.flatten(0, 1).index_copy(
            0, slot_positions, visual_embeds.to(inputs_embeds.dtype)
        )
        return flat_embeds.view_as(inputs_embeds)

    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        visual_features: torch.Tensor | None = None,
        visual_boxes: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch, seq_len)`):
                Word-piece ids, with `config.image_token_id` at every visual slot.
            attention_mask (`torch.Tensor` of shape `(batch, seq_len)`, *optional*):
                1 for real tokens (words and slots), 0 for padding.
            token_type_ids (`torch.LongTensor` of shape `(batch, seq_len)`, *optional*):
                0 for the sentence, 1 for tags and appended regions.
            position_ids (`torch.LongTensor` of shape `(batch, seq_len)`, *optional*):
                An inline slot keeps the position of the sub-word it replaced; appended regions share one
                position id. Defaults to `0..seq_len-1`.
            visual_features (`torch.Tensor` of shape `(batch, num_rows, visual_feature_dim)`, *optional*):
                Region features, one row per visual slot of the sequence, in order; later rows are padding.
            visual_boxes (`torch.Tensor` of shape `(batch, num_rows, 4)`, *optional*):
                Normalized `(x1, y1, x2, y2)` boxes in [0, 1], aligned with `visual_features`.
            inputs_embeds (`torch.Tensor` of shape `(batch, seq_len, hidden_size)`, *optional*):
                Precomputed input embeddings instead of `input_ids` (then no visual inputs may be given).
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Specify exactly one of input_ids or inputs_embeds.")
        if inputs_embeds is None:
            inputs_embeds = self.embed_inputs(input_ids, visual_features, visual_boxes)
        elif visual_features is not None or visual_boxes is not None:
            raise ValueError("visual_features / visual_boxes need input_ids to locate the visual slots.")

        if attention_mask is not None and tuple(attention_mask.shape) != tuple(inputs_embeds.shape[:2]):
            raise ValueError(
                f"attention_mask must have shape {tuple(inputs_embeds.shape[:2])} like input_ids, "
                f"got {tuple(attention_mask.shape)}."
            )
        embedding_output = self.embeddings(
            inputs_embeds, token_type_ids=token_type_ids, position_ids=position_ids
        )
        attention_mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=embedding_output, attention_mask=attention_mask
        )
        sequence_output = self.encoder(embedding_output, attention_mask=attention_mask, **kwargs)
        pooled_output = self.pooler(sequence_output) if self.pooler is not None else None
        return BaseModelOutputWithPooling(last_hidden_state=sequence_output, pooler_output=pooled_output)


class VLMixerForMaskedLM(VLMixerPreTrainedModel):
    """VLMixer with the BERT masked-language-modeling head (decoder tied to the word embeddings).

    At a visual slot, the label is the word piece the patch replaced: predicting it is the token-level
    cross-modal alignment of VLMixer's MLM.
    """

    _tied_weights_keys = {
        "cls.predictions.decoder.weight": "vlmixer.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias",
    }
    # Checkpoints converted from BERT keep the pooler for `VLMixerModel`; this head does not use it.
    _keys_to_ignore_on_load_unexpected = [r"vlmixer\.pooler\."]

    def __init__(self, config: VLMixerConfig):
        super().__init__(config)
        self.vlmixer = VLMixerModel(config, add_pooling_layer=False)
        self.cls = VLMixerOnlyMLMHead(config)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.cls.predictions.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.cls.predictions.decoder = new_embeddings
        self.cls.predictions.bias = new_embeddings.bias

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        visual_features: torch.Tensor | None = None,
        visual_boxes: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MaskedLMOutput:
        r"""
        labels (`torch.LongTensor` of shape `(batch, seq_len)`, *optional*):
            Word-piece ids to predict; -100 where there is nothing to predict.
        """
        outputs = self.vlmixer(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            visual_features=visual_features,
            visual_boxes=visual_boxes,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        prediction_scores = self.cls(outputs.last_hidden_state)

        loss = None
        if labels is not None:
            loss = CrossEntropyLoss()(prediction_scores.view(-1, self.config.vocab_size), labels.view(-1))

        return MaskedLMOutput(
            loss=loss,
            logits=prediction_scores,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


@dataclass
class VLMixerForPreTrainingOutput(ModelOutput):
    r"""
    Output of [`VLMixerForPreTraining`].

    loss (`torch.Tensor` of shape `()`, *optional*):
        `mlm_loss + contrastive_loss` for a VALP batch, `tag_loss` for a TAVP batch.
    mlm_loss (`torch.Tensor` of shape `()`, *optional*):
        Cross-entropy of the predictions on the mixed sentence S^mask against the text T, at the masked
        positions and at every visual slot.
    contrastive_loss (`torch.Tensor` of shape `()`, *optional*):
        In-batch contrastive loss between the T^mask and S^mask views (negatives gathered across processes).
    tag_loss (`torch.Tensor` of shape `()`, *optional*):
        Cross-entropy of the masked tag tokens of a TAVP batch.
    logits (`torch.Tensor` of shape `(batch, seq_len, vocab_size)`):
        Word-piece scores of the main input (S^mask for VALP, the tags + regions for TAVP).
    text_embeds, mixed_embeds (`torch.Tensor` of shape `(batch, contrastive_dim)`, *optional*):
        Contrastive projections of the pooled `[CLS]` states of T^mask and S^mask (before normalization).
    """

    loss: torch.Tensor | None = None
    mlm_loss: torch.Tensor | None = None
    contrastive_loss: torch.Tensor | None = None
    tag_loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    mixed_embeds: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class VLMixerForPreTraining(VLMixerPreTrainedModel):
    """VLMixer with its pre-training heads: the MLM head (tied to the word embeddings) and the contrastive
    projection of the pooled `[CLS]` state.

    A VALP batch gives the mixed sentence S^mask as `input_ids` (with its visual inputs), the aligned masked
    text T^mask as `text_input_ids` and the MLM targets (the words of T) as `labels`; the two views go
    through the encoder in one batched pass. A TAVP batch gives tags + regions as `input_ids` and the masked
    tag targets as `tag_labels`.
    """

    _tied_weights_keys = {
        "cls.predictions.decoder.weight": "vlmixer.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias",
    }

    def __init__(self, config: VLMixerConfig):
        super().__init__(config)
        self.vlmixer = VLMixerModel(config)
        self.cls = VLMixerOnlyMLMHead(config)
        self.contrastive_projection = nn.Linear(config.hidden_size, config.contrastive_dim)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.cls.predictions.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.cls.predictions.decoder = new_embeddings
        self.cls.predictions.bias = new_embeddings.bias

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        visual_features: torch.Tensor | None = None,
        visual_boxes: torch.Tensor | None = None,
        text_input_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        tag_labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> VLMixerForPreTrainingOutput:
        r"""
        text_input_ids (`torch.LongTensor` of shape `(batch, seq_len)`, *optional*):
            VALP: the masked text view T^mask, aligned position by position with `input_ids` (S^mask); it
            shares `attention_mask`, `token_type_ids` and `position_ids`. Enables the contrastive loss.
        labels (`torch.LongTensor` of shape `(batch, seq_len)`, *optional*):
            VALP: the word pieces of T at the masked positions and the visual slots of S, -100 elsewhere.
        tag_labels (`torch.LongTensor` of shape `(batch, seq_len)`, *optional*):
            TAVP: the masked tag word pieces, -100 elsewhere.
        """
        if text_input_ids is not None and tag_labels is not None:
            raise ValueError(
                "A batch is either VALP (text_input_ids, labels) or TAVP (tag_labels), not both."
            )
        if text_input_ids is not None and text_input_ids.shape != input_ids.shape:
            raise ValueError(
                f"text_input_ids {tuple(text_input_ids.shape)} must be aligned with input_ids "
                f"{tuple(input_ids.shape)}: cross-modal CutMix keeps len(S) == len(T)."
            )
        batch_size = input_ids.shape[0]
        if text_input_ids is not None:
            # One encoder pass over both views: S^mask rows first, then T^mask rows (no visual slots).
            if bool((text_input_ids == self.config.image_token_id).any()):
                raise ValueError("text_input_ids (T^mask) must not contain visual slots.")

            def twice(tensor):
                return None if tensor is None else torch.cat([tensor, tensor], dim=0)

            encoder_inputs = {
                "input_ids": torch.cat([input_ids, text_input_ids], dim=0),
                "attention_mask": twice(attention_mask),
                "token_type_ids": twice(token_type_ids),
                "position_ids": twice(position_ids),
                "visual_features": twice(visual_features),
                "visual_boxes": twice(visual_boxes),
            }
        else:
            encoder_inputs = {
                "input_ids": input_ids,
                "attention_mask": attention_mask,
                "token_type_ids": token_type_ids,
                "position_ids": position_ids,
                "visual_features": visual_features,
                "visual_boxes": visual_boxes,
            }
        outputs = self.vlmixer(**encoder_inputs, return_dict=True, **kwargs)
        sequence_output = outputs.last_hidden_state[:batch_size]
        logits = self.cls(sequence_output)

        mlm = contrastive = tag = text_embeds = mixed_embeds = None
        if text_input_ids is not None:
            projected = self.contrastive_projection(outputs.pooler_output)
            mixed_embeds, text_embeds = projected[:batch_size], projected[batch_size:]
            contrastive = contrastive_loss(text_embeds, mixed_embeds, self.config.contrastive_temperature)
        if labels is not None:
            mlm = masked_lm_loss(logits, labels)
        if tag_labels is not None:
            tag = masked_lm_loss(logits, tag_labels)
        parts = [part for part in (mlm, contrastive, tag) if part is not None]
        loss = sum(parts) if parts else None

        def first_half(states):
            return None if states is None else tuple(state[:batch_size] for state in states)

        return VLMixerForPreTrainingOutput(
            loss=loss,
            mlm_loss=mlm,
            contrastive_loss=contrastive,
            tag_loss=tag,
            logits=logits,
            text_embeds=text_embeds,
            mixed_embeds=mixed_embeds,
            hidden_states=first_half(outputs.hidden_states),
            attentions=first_half(outputs.attentions),
        )


# Pre-training heads a downstream head does not use when it is initialized from a pre-training checkpoint.
_PRETRAINING_HEAD_KEYS = [r"^cls\.", r"^contrastive_projection\."]


class VLMixerClassificationHead(nn.Module):
    """The downstream MLP of UNITER / VinVL: `Linear(d, 2h) -> GELU -> LayerNorm -> Dropout -> Linear(2h, n)`."""

    def __init__(self, config: VLMixerConfig, input_dim: int, num_labels: int):
        super().__init__()
        dropout = config.classifier_dropout
        self.dense = nn.Linear(input_dim, 2 * config.hidden_size)
        self.activation = ACT2FN["gelu"]
        self.LayerNorm = nn.LayerNorm(2 * config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob if dropout is None else dropout)
        self.out_proj = nn.Linear(2 * config.hidden_size, num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """`(batch, input_dim)` pooled states -> `(batch, num_labels)` logits."""
        hidden = self.LayerNorm(self.activation(self.dense(pooled)))
        return self.out_proj(self.dropout(hidden))


class VLMixerForQuestionAnswering(VLMixerPreTrainedModel):
    """VLMixer with a classifier over an answer vocabulary on the pooled `[CLS]` state (VQA v2, GQA).

    `config.problem_type` selects the loss: `"multi_label_classification"` (VQA: soft scores in [0, 1] per
    answer, binary cross-entropy averaged over the batch and the answers, times `num_labels`, as UNITER, Oscar
    and VinVL train it) or `"single_label_classification"` (GQA: one answer id, cross-entropy). When unset it
    is inferred from the labels (float -> multi-label, integer -> single-label) and stored in the config.
    The answer vocabulary is `config.id2label`.
    """

    _keys_to_ignore_on_load_unexpected = _PRETRAINING_HEAD_KEYS

    def __init__(self, config: VLMixerConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.vlmixer = VLMixerModel(config)
        self.classifier = VLMixerClassificationHead(config, config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        visual_features: torch.Tensor | None = None,
        visual_boxes: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SequenceClassifierOutput:
        r"""
        labels (`torch.FloatTensor` of shape `(batch, num_labels)` or `torch.LongTensor` of shape `(batch,)`, *optional*):
            VQA: the soft score of every answer (0, 0.3, 0.6, 0.9 or 1.0); GQA: the answer id.
        """
        outputs = self.vlmixer(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            visual_features=visual_features,
            visual_boxes=visual_boxes,
            return_dict=True,
            **kwargs,
        )
        logits = self.classifier(outputs.pooler_output)
        loss = None
        if labels is not None:
            loss = answer_classification_loss(self.config, logits, labels)
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


def answer_classification_loss(
    config: VLMixerConfig, logits: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Loss of [`VLMixerForQuestionAnswering`] for `config.problem_type` (inferred from `labels` when unset)."""
    num_labels = logits.shape[-1]
    if config.problem_type is None:
        config.problem_type = (
            "multi_label_classification" if labels.is_floating_point() else "single_label_classification"
        )
    if config.problem_type == "multi_label_classification":
        if tuple(labels.shape) != tuple(logits.shape):
            raise ValueError(
                f"labels for multi_label_classification must be soft scores of shape {tuple(logits.shape)} "
                f"(batch, num_labels), got {tuple(labels.shape)}."
            )
        return BCEWithLogitsLoss()(logits.float(), labels.float()) * num_labels
    if config.problem_type == "single_label_classification":
        if labels.dim() != 1 or labels.shape[0] != logits.shape[0] or labels.is_floating_point():
            raise ValueError(
                f"labels for single_label_classification must be answer ids of shape ({logits.shape[0]},), "
                f"got {labels.dtype} {tuple(labels.shape)}."
            )
        return CrossEntropyLoss()(logits.float(), labels)
    raise ValueError(
        f"config.problem_type must be 'multi_label_classification' (VQA) or 'single_label_classification' "
        f"(GQA), got {config.problem_type!r}."
    )


class VLMixerForVisualReasoning(VLMixerPreTrainedModel):
    """VLMixer for NLVR2: one sentence, two images. Each (sentence, image) pair is encoded on its own, the two
    pooled `[CLS]` states are concatenated and an MLP gives 2 logits (`config.id2label`: 0 False, 1 True).

    Every input carries a pair dimension: `input_ids` `(batch, 2, seq_len)`, `visual_features`
    `(batch, 2, num_rows, visual_feature_dim)`, and so on; row `[b, k]` is the sentence with image `k`.
    """

    _keys_to_ignore_on_load_unexpected = _PRETRAINING_HEAD_KEYS

    def __init__(self, config: VLMixerConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        if self.num_labels != 2:
            raise ValueError(f"NLVR2 has 2 classes (False, True); got config.num_labels={config.num_labels}.")
        self.vlmixer = VLMixerModel(config)
        self.classifier = VLMixerClassificationHead(config, 2 * config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        visual_features: torch.Tensor | None = None,
        visual_boxes: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SequenceClassifierOutput:
        r"""
        input_ids (`torch.LongTensor` of shape `(batch, 2, seq_len)`):
            The sentence with the regions of each of its two images appended.
        visual_features (`torch.Tensor` of shape `(batch, 2, num_rows, visual_feature_dim)`, *optional*):
            Region features of the two images; `visual_boxes` likewise `(batch, 2, num_rows, 4)`.
        labels (`torch.LongTensor` of shape `(batch,)`, *optional*):
            1 if the sentence is true of the image pair, else 0.
        """
        if input_ids is None or input_ids.dim() != 3 or input_ids.shape[1] != 2:
            shape = None if input_ids is None else tuple(input_ids.shape)
            raise ValueError(
                f"input_ids must have shape (batch, 2, seq_len), one row per image; got {shape}."
            )
        batch_size = input_ids.shape[0]

        def pairs_as_rows(name: str, tensor: torch.Tensor | None, trailing: int) -> torch.Tensor | None:
            if tensor is None:
                return None
            if tensor.dim() != 2 + trailing or tuple(tensor.shape[:2]) != (batch_size, 2):
                raise ValueError(
                    f"{name} must have a pair dimension like input_ids: shape ({batch_size}, 2, ...) with "
                    f"{2 + trailing} dimensions, got {tuple(tensor.shape)}."
                )
            return tensor.flatten(0, 1)

        outputs = self.vlmixer(
            pairs_as_rows("input_ids", input_ids, 1),
            attention_mask=pairs_as_rows("attention_mask", attention_mask, 1),
            token_type_ids=pairs_as_rows("token_type_ids", token_type_ids, 1),
            position_ids=pairs_as_rows("position_ids", position_ids, 1),
            visual_features=pairs_as_rows("visual_features", visual_features, 2),
            visual_boxes=pairs_as_rows("visual_boxes", visual_boxes, 2),
            return_dict=True,
            **kwargs,
        )
        logits = self.classifier(outputs.pooler_output.reshape(batch_size, 2 * self.config.hidden_size))
        loss = None
        if labels is not None:
            loss = CrossEntropyLoss()(logits.float(), labels.view(-1))
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


@dataclass
class VLMixerForImageTextRetrievalOutput(ModelOutput):
    r"""
    Output of [`VLMixerForImageTextRetrieval`].

    loss (`torch.Tensor` of shape `()`, *optional*):
        `matching_loss + contrastive_loss` (the parts that were computed).
    matching_loss (`torch.Tensor` of shape `()`, *optional*):
        Binary cross-entropy of the matching scores against `labels` (1 matching pair, 0 not).
    contrastive_loss (`torch.Tensor` of shape `()`, *optional*):
        Symmetric in-batch contrastive loss between `text_embeds` and `image_embeds` (row i matches row i).
    logits (`torch.Tensor` of shape `(batch,)`):
        Matching score of each joint (text, image) row; higher means a better match.
    text_embeds, image_embeds (`torch.Tensor` of shape `(batch, contrastive_dim)`, *optional*):
        L2-normalized embeddings of the text-only and image-only views, for the fast first stage.
    """

    loss: torch.Tensor | None = None
    matching_loss: torch.Tensor | None = None
    contrastive_loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class VLMixerForImageTextRetrieval(VLMixerPreTrainedModel):
    """VLMixer for image-text retrieval: a matching head on the pooled `[CLS]` state of the joint sequence
    (text + appended regions), plus projections of the text-only and image-only (tags + regions) `[CLS]`
    states into one embedding space for a fast first stage (see `modeling_vlmixer.retrieval`).

    Training batches hold joint rows with `labels` (1 for a matching pair, 0 for a sampled negative) and,
    optionally, the text-only view (`text_*`) and image-only view (`image_*`) of the positive pairs, which add
    the contrastive loss that trains the embeddings.
    """

    _keys_to_ignore_on_load_unexpected = _PRETRAINING_HEAD_KEYS

    def __init__(self, config: VLMixerConfig):
        super().__init__(config)
        self.vlmixer = VLMixerModel(config)
        self.matching_head = nn.Linear(config.hidden_size, 1)
        self.text_projection = nn.Linear(config.hidden_size, config.contrastive_dim)
        self.image_projection = nn.Linear(config.hidden_size, config.contrastive_dim)
        self.post_init()

    def get_text_features(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
    ) -> torch.Tensor:
        """`(batch, contrastive_dim)` L2-normalized embeddings of text-only inputs (no visual slots)."""
        pooled = self.vlmixer(
            input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, position_ids=position_ids
        ).pooler_output
        return nn.functional.normalize(self.text_projection(pooled).float(), dim=-1)

    def get_image_features(
        self,
        input_ids: torch.LongTensor,
        visual_features: torch.Tensor,
        visual_boxes: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
    ) -> torch.Tensor:
        """`(batch, contrastive_dim)` L2-normalized embeddings of image-only inputs (tags + regions, as the
        processor builds them from regions alone)."""
        pooled = self.vlmixer(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            visual_features=visual_features,
            visual_boxes=visual_boxes,
        ).pooler_output
        return nn.functional.normalize(self.image_projection(pooled).float(), dim=-1)

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        visual_features: torch.Tensor | None = None,
        visual_boxes: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        text_input_ids: torch.LongTensor | None = None,
        text_attention_mask: torch.Tensor | None = None,
        image_input_ids: torch.LongTensor | None = None,
        image_attention_mask: torch.Tensor | None = None,
        image_token_type_ids: torch.LongTensor | None = None,
        image_position_ids: torch.LongTensor | None = None,
        image_visual_features: torch.Tensor | None = None,
        image_visual_boxes: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> VLMixerForImageTextRetrievalOutput:
        r"""
        input_ids (`torch.LongTensor` of shape `(batch, seq_len)`):
            Joint rows: a caption with the regions of one image appended.
        labels (`torch.Tensor` of shape `(batch,)`, *optional*):
            1 where the caption matches the image, 0 for a negative pair.
        text_input_ids, text_attention_mask (`torch.Tensor` of shape `(num_pairs, text_len)`, *optional*):
            Text-only view of the positive pairs.
        image_input_ids, image_attention_mask, image_token_type_ids, image_position_ids (`(num_pairs, image_len)`),
        image_visual_features (`(num_pairs, num_rows, visual_feature_dim)`), image_visual_boxes
        (`(num_pairs, num_rows, 4)`), *optional*:
            Image-only view (tags + regions) of the positive pairs; row i matches row i of the text view.
        """
        outputs = self.vlmixer(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            visual_features=visual_features,
            visual_boxes=visual_boxes,
            return_dict=True,
            **kwargs,
        )
        logits = self.matching_head(outputs.pooler_output).squeeze(-1)
        matching = contrastive = text_embeds = image_embeds = None
        if labels is not None:
            if tuple(labels.shape) != tuple(logits.shape):
                raise ValueError(
                    f"labels must hold one 0/1 match label per joint row, shape {tuple(logits.shape)}; "
                    f"got {tuple(labels.shape)}."
                )
            matching = BCEWithLogitsLoss()(logits.float(), labels.float())
        if (text_input_ids is None) != (image_input_ids is None):
            raise ValueError(
                "The contrastive loss needs both views: give text_input_ids and image_input_ids."
            )
        if text_input_ids is not None:
            text_embeds = self.get_text_features(text_input_ids, attention_mask=text_attention_mask)
            image_embeds = self.get_image_features(
                image_input_ids,
                image_visual_features,
                image_visual_boxes,
                attention_mask=image_attention_mask,
                token_type_ids=image_token_type_ids,
                position_ids=image_position_ids,
            )
            if text_embeds.shape[0] != image_embeds.shape[0]:
                raise ValueError(
                    f"The text view has {text_embeds.shape[0]} rows and the image view {image_embeds.shape[0]}: "
                    "row i of each must be the same positive pair."
                )
            temperature = self.config.contrastive_temperature
            contrastive = 0.5 * (
                contrastive_loss(text_embeds, image_embeds, temperature)
                + contrastive_loss(image_embeds, text_embeds, temperature)
            )
        parts = [part for part in (matching, contrastive) if part is not None]
        return VLMixerForImageTextRetrievalOutput(
            loss=sum(parts) if parts else None,
            matching_loss=matching,
            contrastive_loss=contrastive,
            logits=logits,
            text_embeds=text_embeds,
            image_embeds=image_embeds,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


# Saving any of these classes copies this file and its siblings and fills `config.auto_map`.
VLMixerModel.register_for_auto_class("AutoModel")
VLMixerForMaskedLM.register_for_auto_class("AutoModelForMaskedLM")
VLMixerForPreTraining.register_for_auto_class("AutoModelForPreTraining")
VLMixerForQuestionAnswering.register_for_auto_class("AutoModelForVisualQuestionAnswering")
# transformers has no Auto class for these two tasks; the package defines them (`modeling_vlmixer.auto`), and
# `register_for_auto_class` only accepts transformers' own, so the name is set directly.
VLMixerForVisualReasoning._auto_class = "AutoModelForVisualReasoning"
VLMixerForImageTextRetrieval._auto_class = "AutoModelForImageTextRetrieval"


__all__ = [
    "VLMixerPreTrainedModel",
    "VLMixerModel",
    "VLMixerForMaskedLM",
    "VLMixerForPreTraining",
    "VLMixerForPreTrainingOutput",
    "VLMixerForQuestionAnswering",
    "VLMixerForVisualReasoning",
    "VLMixerForImageTextRetrieval",
    "VLMixerForImageTextRetrievalOutput",
    "VLMixerVisualEmbeddings",
    "box_geometry",
]
