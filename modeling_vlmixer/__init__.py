"""VLMixer: unpaired vision-language pre-training via cross-modal CutMix, as a transformers model package.

Importing this package registers the VLMixer classes with the transformers Auto classes, so that
`AutoConfig`, `AutoModel` and the task Auto classes load VLMixer checkpoints without
`trust_remote_code`.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForPreTraining,
    AutoModelForVisualQuestionAnswering,
)

from .auto import AutoModelForImageTextRetrieval, AutoModelForVisualReasoning
from .configuration_vlmixer import VLMIXER_AUTO_MAP, VLMixerConfig
from .modeling_vlmixer import (
    VLMixerForImageTextRetrieval,
    VLMixerForImageTextRetrievalOutput,
    VLMixerForMaskedLM,
    VLMixerForPreTraining,
    VLMixerForPreTrainingOutput,
    VLMixerForQuestionAnswering,
    VLMixerForVisualReasoning,
    VLMixerModel,
    VLMixerPreTrainedModel,
    VLMixerVisualEmbeddings,
    box_geometry,
)


AutoConfig.register(VLMixerConfig.model_type, VLMixerConfig, exist_ok=True)
AutoModel.register(VLMixerConfig, VLMixerModel, exist_ok=True)
AutoModelForMaskedLM.register(VLMixerConfig, VLMixerForMaskedLM, exist_ok=True)
AutoModelForPreTraining.register(VLMixerConfig, VLMixerForPreTraining, exist_ok=True)
AutoModelForVisualQuestionAnswering.register(VLMixerConfig, VLMixerForQuestionAnswering, exist_ok=True)
AutoModelForVisualReasoning.register(VLMixerConfig, VLMixerForVisualReasoning, exist_ok=True)
AutoModelForImageTextRetrieval.register(VLMixerConfig, VLMixerForImageTextRetrieval, exist_ok=True)

__version__ = "0.1.0"

__all__ = [
    "AutoModelForImageTextRetrieval",
    "AutoModelForVisualReasoning",
    "VLMIXER_AUTO_MAP",
    "VLMixerConfig",
    "VLMixerForImageTextRetrieval",
    "VLMixerForImageTextRetrievalOutput",
    "VLMixerForMaskedLM",
    "VLMixerForPreTraining",
    "VLMixerForPreTrainingOutput",
    "VLMixerForQuestionAnswering",
    "VLMixerForVisualReasoning",
    "VLMixerModel",
    "VLMixerPreTrainedModel",
    "VLMixerVisualEmbeddings",
    "box_geometry",
]
