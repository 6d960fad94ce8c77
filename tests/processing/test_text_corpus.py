"""Tests of the text corpora (`processing.text_corpus`) and `vlmixer build-text-corpus`."""

import json
import os

import datasets
import pytest

from modeling_vlmixer.cli import main as vlmixer
from processing.text_corpus import (
    TextSource,
    build_text_corpus,
    iter_texts,
    normalize_whitespace,
    read_cc3m_tsv,
    read_coco_captions,
    split_sentences,
)


@pytest.mark.parametrize(
    "text, sentences",
    [
        ("A dog runs. A cat sleeps!  Is it raining? Yes.",
         ["A dog runs.", "A cat sleeps!", "Is it raining?", "Yes."]),
        ("Mr. Smith met Dr. Jones at 3.30 p.m. on Friday. They talked.",
         ["Mr. Smith met Dr. Jones at 3.30 p.m. on Friday.", "They talked."]),
        ('"Stop!" she shouted. "Why?" He asked. (It was late.) Then silence',
         ['"Stop!" she shouted.', '"Why?"', "He asked.", "(It was late.)", "Then silence"]),
        ("J. R. R. Tolkien wrote books, e.g. The Hobbit. It sold well...",
         ["J. R. R. Tolkien wrote books, e.g. The Hobbit.", "It sold well..."]),
        ("Wait... what? No, 2 more. 3 left.", ["Wait... what?", "No, 2 more.", "3 left."]),
        ("lower case. no split here", ["lower case. no split here"]),
        ("  \t ", []),
    ],
)  # fmt: skip
def test_split_sentences(text, sentences):
    assert split_sentences(text) == sentences


def test_normalize_whitespace():
    assert normalize_whitespace("  A\tdog \n\n runs  ") == "A dog runs"


@pytest.fixture
def sources(tmp_path):
    coco = tmp_path / "captions_train2017.json"
    coco.write_text(json.dumps({
        "images": [{"id": 1}],
        "annotations": [
            {"image_id": 1, "id": 10, "caption": "A man riding a horse on a beach."},
            {"image_id": 1, "id": 11, "caption": "A  man riding a horse\non a beach. "},  # a duplicate
            {"image_id": 1, "id": 12, "caption": "Two dogs play with a frisbee."},
        ],
    }))  # fmt: skip
    cc3m = tmp_path / "Train_GCC-training.tsv"
    cc3m.write_text(
        "actor attends the premiere\thttp://example.invalid/1.jpg\n"
        "two dogs play with a frisbee.\thttp://example.invalid/2.jpg\n"  # differs in case: kept
        "\n"
        "A man riding a horse on a beach.\thttp://example.invalid/3.jpg\n"  # duplicate across sources
    )
    books = tmp_path / "books.txt"
    books.write_text(
        "It was a dark night. Mr. Brown opened the door!\n"
        "\n"
        "It was a dark night.\n"  # duplicate sentence
        "He saw a dog. The dog wagged its tail.\n"
    )
    return [TextSource("coco", coco), TextSource("cc3m", cc3m), TextSource("text", books)]


EXPECTED = [
    ("A man riding a horse on a beach.", "captions_train2017.json"),
    ("Two dogs play with a frisbee.", "captions_train2017.json"),
    ("actor attends the premiere", "Train_GCC-training.tsv"),
    ("two dogs play with a frisbee.", "Train_GCC-training.tsv"),
    ("It was a dark night.", "books.txt"),
    ("Mr. Brown opened the door!", "books.txt"),
    ("He saw a dog.", "books.txt"),
    ("The dog wagged its tail.", "books.txt"),
]


def test_build_text_corpus_to_disk(sources, tmp_path):
    corpus = build_text_corpus(sources, tmp_path / "corpus")

    assert isinstance(corpus, datasets.Dataset)
    assert list(zip(corpus["text"], corpus["source"], strict=True)) == EXPECTED
    reloaded = datasets.load_from_disk(str(tmp_path / "corpus"))
    assert reloaded.features == corpus.features and len(reloaded) == len(EXPECTED)
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]  # no temporary leftovers


def test_build_text_corpus_streaming(sources, tmp_path):
    corpus = build_text_corpus(sources, streaming=True)

    assert isinstance(corpus, datasets.IterableDataset)
    assert [(example["text"], example["source"]) for example in corpus] == EXPECTED
    assert corpus.num_shards == 1  # one generator, so that de-duplication spans the files
    assert not (tmp_path / "corpus").exists()


def test_options(sources, tmp_path):
    texts = [example["text"] for example in iter_texts(sources, deduplicate=False)]
    assert len(texts) == 11 and texts.count("It was a dark night.") == 2
    whole_lines = [example["text"] for example in iter_texts(sources[2:], split=False)]
    assert whole_lines[0] == "It was a dark night. Mr. Brown opened the door!"
    long_texts = [example["text"] for example in iter_texts(sources, min_words=6)]
    assert long_texts == ["A man riding a horse on a beach.", "Two dogs play with a frisbee.",
                          "two dogs play with a frisbee."]  # fmt: skip


def test_errors(sources, tmp_path):
    bad_coco = tmp_path / "bad.json"
    bad_coco.write_text(json.dumps({"annotations": [{"caption": "ok"}, {"id": 3}]}))
    with pytest.raises(ValueError, match=r"bad.json: annotations\[1\] has no string `caption`"):
        list(read_coco_captions(bad_coco))
    bad_coco.write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="has no `annotations` list"):
        list(read_coco_captions(bad_coco))
    bad_tsv = tmp_path / "bad.tsv"
    bad_tsv.write_text("a caption\thttp://x\njust a caption\n")
    with pytest.raises(ValueError, match=r"bad.tsv, line 2: has 1 tab-separated field\(s\), expected 2"):
        list(read_cc3m_tsv(bad_tsv))
    with pytest.raises(ValueError, match="Unknown text corpus format 'html'"):
        TextSource("html", "x.html")
    with pytest.raises(ValueError, match="does not exist"):
        build_text_corpus([("text", tmp_path / "missing.txt")], tmp_path / "out")

    # A malformed source fails the build and leaves nothing behind.
    before = set(os.listdir(tmp_path))
    with pytest.raises(ValueError, match="bad.tsv, line 2"):
        build_text_corpus(sources + [TextSource("cc3m", bad_tsv)], tmp_path / "corpus")
    assert set(os.listdir(tmp_path)) == before

    build_text_corpus(sources, tmp_path / "corpus")
    with pytest.raises(ValueError, match="not empty"):
        build_text_corpus(sources, tmp_path / "corpus")


def test_build_text_corpus_command(sources, tmp_path, capsys):
    coco, cc3m, books = (source.path for source in sources)
    vlmixer(
        [
            "build-text-corpus",
            "--coco",
            coco,
            "--cc3m",
            cc3m,
            "--text",
            books,
            "--output",
            str(tmp_path / "out"),
        ]
    )
    assert f"wrote a text corpus of {len(EXPECTED)} texts" in capsys.readouterr().out
    assert datasets.load_from_disk(str(tmp_path / "out"))["text"] == [text for text, _ in EXPECTED]
