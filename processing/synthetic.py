"""A small synthetic unpaired corpus: images of a few concepts and sentences that mention them.

Every concept has a prototype feature vector; a region of that concept is its prototype plus noise, at a
random box. The images and the sentences are drawn independently (nothing is paired), which is the setting
VLMixer pre-trains in. Used by the tests, the benchmarks and smoke runs of `vlmixer pretrain`.
"""

from dataclasses import dataclass

import numpy as np

from .feature_extraction_vlmixer import RegionFeatures


DEFAULT_CONCEPTS = ("dog", "cat", "horse", "car", "boat", "tree", "bird", "chair")
TEMPLATES = (
    "a {0} next to a {1}.",
    "the {0} is near the {1}.",
    "i saw a {0} and a {1} today.",
    "there is a {0} behind the {1}.",
    "a photo of a {0}.",
    "look at that {0} over there.",
)


@dataclass
class SyntheticCorpus:
    """Image records (detector output) and sentences over `concepts`, not paired with each other."""

    concepts: tuple[str, ...]
    prototypes: np.ndarray  # (num_concepts, feature_dim)
    records: list[RegionFeatures]
    sentences: list[str]

    def region(
        self, concept: str, rng: np.random.Generator, noise: float = 0.3
    ) -> tuple[np.ndarray, np.ndarray]:
        """A fresh region of `concept`: `(feature (feature_dim,), normalized box (4,))`."""
        index = self.concepts.index(concept)
        feature = self.prototypes[index] + noise * rng.normal(size=self.prototypes.shape[1])
        x1, y1 = rng.uniform(0, 0.5, size=2)
        return feature.astype(np.float32), np.array([x1, y1, x1 + 0.4, y1 + 0.4], dtype=np.float32)


def make_synthetic_corpus(
    num_images: int = 60,
    num_sentences: int = 300,
    feature_dim: int = 16,
    concepts: tuple[str, ...] = DEFAULT_CONCEPTS,
    noise: float = 0.3,
    seed: int = 0,
) -> SyntheticCorpus:
    """Builds the corpus: `num_images` 100x100 images with 2-3 regions each, `num_sentences` sentences."""
    rng = np.random.default_rng(seed)
    prototypes = rng.normal(size=(len(concepts), feature_dim)).astype(np.float32)
    records = []
    for image in range(num_images):
        chosen = rng.choice(len(concepts), size=int(rng.integers(2, 4)), replace=False)
        features = prototypes[chosen] + noise * rng.normal(size=(len(chosen), feature_dim))
        corners = rng.uniform(0, 50, size=(len(chosen), 2))
        boxes = np.concatenate([corners, corners + rng.uniform(10, 50, size=(len(chosen), 2))], axis=1)
        records.append(
            RegionFeatures(
                features=features.astype(np.float32),
                boxes=boxes.astype(np.float32),
                image_width=100,
                image_height=100,
                labels=[concepts[i] for i in chosen],
                scores=rng.uniform(0.5, 1.0, size=len(chosen)).astype(np.float32),
                image_id=f"synthetic-{image}",
            )
        )
    sentences = []
    for _ in range(num_sentences):
        first, second = rng.choice(len(concepts), size=2, replace=False)
        template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
        sentences.append(template.format(concepts[first], concepts[second]))
    return SyntheticCorpus(tuple(concepts), prototypes, records, sentences)


def records_to_region_rows(records: list[RegionFeatures]) -> dict[str, list]:
    """Column dict (for `datasets.Dataset.from_dict`) of region-store rows holding `records`."""
    return {
        "image_id": [r.image_id for r in records],
        "image_width": [r.image_width for r in records],
        "image_height": [r.image_height for r in records],
        "features": [r.features.tolist() for r in records],
        "boxes": [r.boxes.tolist() for r in records],
        "labels": [list(r.labels) for r in records],
        "scores": [r.scores.tolist() for r in records],
    }
