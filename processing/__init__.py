"""VLMixer processing: tokenizer handling, region features, patch gallery, cross-modal CutMix, processor.

Importing this package registers `VLMixerProcessor` and `VLMixerRegionFeatureExtractor` with
`AutoProcessor` / `AutoFeatureExtractor`, so saved processors load without `trust_remote_code`.
"""

from transformers import AutoFeatureExtractor, AutoProcessor

from modeling_vlmixer import VLMixerConfig

from .cross_modal_cutmix import CrossModalCutMix, CutMixResult, normalize_concept
from .feature_extraction_vlmixer import RegionFeatures, VLMixerRegionFeatureExtractor
from .patch_gallery import PatchGallery
from .processing_vlmixer import VLMixerProcessor
from .tokenization import add_image_token, check_image_token, train_tokenizer


AutoFeatureExtractor.register(VLMixerConfig, VLMixerRegionFeatureExtractor, exist_ok=True)
AutoProcessor.register(VLMixerConfig, VLMixerProcessor, exist_ok=True)

__all__ = [
    "CrossModalCutMix",
    "CutMixResult",
    "PatchGallery",
    "RegionFeatures",
    "VLMixerProcessor",
    "VLMixerRegionFeatureExtractor",
    "add_image_token",
    "check_image_token",
    "normalize_concept",
    "train_tokenizer",
]
