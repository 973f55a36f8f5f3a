"""Where each benchmark corpus lives under the data folder (``$LLMIE_DATA_DIR``), and the split rule.

One home for paths that were spelled in six modules. The split rule: a *test* file never feeds
training or tuning (``check_trainable``); training and tuning read train/dev splits, or the first 80%
of the gold word alignments (the last 20% are the held-out AER split).
"""
from __future__ import annotations

from pathlib import Path

from llmie.settings import data_dir

MASAKHANER_LANGS = ("bam", "bbj", "ewe", "fon", "hau", "ibo", "kin", "lug", "luo", "mos", "nya", "pcm", "sna", "swa",
                    "tsn", "twi", "wol", "xho", "yor", "zul")


def _root(data: Path | None) -> Path:
    return data if data is not None else data_dir()


def exp_dir(data: Path | None = None) -> Path:
    """EXP label-projection pairs: exp/<dataset>/en-<lang>.test.jsonl (test only)."""
    return _root(data) / "exp"


def uner_en(split: str, data: Path | None = None) -> Path:
    """UNER English-EWT (.iob2); it ships dev and test only, so `train` means dev (test is never trained on)."""
    return _root(data) / "ner/uner_en_ewt" / f"en_ewt-ud-{'dev' if split == 'train' else split}.iob2"


def masakhaner_dir(data: Path | None = None) -> Path:
    return _root(data) / "ner/masakhaner2"


def masakhaner(lang: str, split: str, data: Path | None = None) -> Path:
    """MasakhaNER 2.0 two-column CoNLL: ner/masakhaner2/<lang>/{train,dev,test}.txt."""
    return masakhaner_dir(data) / lang / f"{split}.txt"


def ud_en(split: str, data: Path | None = None) -> Path:
    """UD English-EWT .conllu; `train` is the reconstructed train file."""
    name = "train.reconstructed" if split == "train" else split
    return _root(data) / "pos/ud_en_ewt" / f"en_ewt-ud-{name}.conllu"


def ud_files(split: str, data: Path | None = None) -> dict[str, Path]:
    """{lang: file} of every UD treebank's split under pos/ (English first)."""
    found = {"en": ud_en(split, data)}
    for f in sorted(_root(data).glob(f"pos/ud_*/*-ud-{split}.conllu")):
        found.setdefault(f.parent.name.split("_")[1], f)
    return found


def word_alignment_dir(data: Path | None = None) -> Path:
    """Gold word alignments: <pair>.src-tgt + <pair>.gold; first 80% train, last 20% held out."""
    return _root(data) / "word_alignment"


def relx_english(data: Path | None = None) -> Path:
    """RELX English sentences with SUBJ/OBJ and relation labels: the English side of the en-de EXP file
    (llmie has no other RELX English data). `llmie optimize --task re` cuts disjoint train/dev/test slices
    from it; it is a projection test set, not an RE test set, so RE tuning on it does not touch a score
    llmie reports as test."""
    return exp_dir(data) / "relx/en-de.test.jsonl"


def is_test_file(path: str | Path) -> bool:
    """True for a benchmark test split: `*.test.*`, `*-test.*`, `test.txt`, anything under exp/."""
    p = Path(path).resolve()
    name = p.name.lower()
    exp = exp_dir().resolve()
    return (".test." in name or "-test." in name or name.startswith("test.") or p == exp or exp in p.parents)


def check_trainable(path: str | Path, purpose: str = "training") -> Path:
    """The split rule: refuse a test file as training or tuning data (one clear error)."""
    if is_test_file(path):
        raise ValueError(f"{path}: a test split; refusing to use it for {purpose} (test files only score)")
    return Path(path)
