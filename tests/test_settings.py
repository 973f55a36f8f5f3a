"""One settings home (llmie/settings.py) and one dataset home with the split rule (llmie/datasets.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from llmie import datasets, settings


def test_settings_are_read_at_call_time(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMIE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LLMIE_CACHE", str(tmp_path / "c"))
    monkeypatch.delenv("LLMIE_RESPONSE_CACHE", raising=False)
    monkeypatch.setenv("LLMIE_MT_THREADS", "3")
    assert settings.data_dir() == tmp_path.resolve()
    assert settings.response_cache() == tmp_path / "c" / "responses.sqlite"
    assert settings.mt_threads() == 3
    assert datasets.uner_en("dev") == tmp_path.resolve() / "ner/uner_en_ewt/en_ewt-ud-dev.iob2"
    with pytest.raises(KeyError, match="not an llmie setting"):
        settings._get("LLMIE_NOPE")
    from llmie.backends.cache import default_cache_path
    from llmie.models import cache_dir

    assert default_cache_path() == settings.response_cache() and cache_dir() == tmp_path / "c"


def test_every_llmie_variable_in_the_code_is_declared():
    import re

    pkg = Path(settings.__file__).parent
    used = {m for f in pkg.rglob("*.py") for m in re.findall(r"LLMIE_[A-Z_]+", f.read_text(encoding="utf-8"))}
    assert used - set(settings.VARS) <= {"LLMIE_"}, used - set(settings.VARS)


def test_dataset_paths_exist_in_the_shared_data(data_dir):
    for p in (datasets.uner_en("dev"), datasets.uner_en("test"), datasets.masakhaner("hau", "dev"),
              datasets.ud_en("test"), datasets.relx_english(), datasets.word_alignment_dir(), datasets.exp_dir()):
        assert p.exists(), p
    assert datasets.uner_en("train") == datasets.uner_en("dev")  # UNER EWT ships dev/test only: train on dev
    assert "en" in datasets.ud_files("test")


@pytest.mark.parametrize("path,test", [("ner/uner_en_ewt/en_ewt-ud-test.iob2", True),
                                       ("ner/masakhaner2/hau/test.txt", True), ("pos/ud_x/x-ud-test.conllu", True),
                                       ("exp/relx/en-de.no_relation.jsonl", True),
                                       ("ner/uner_en_ewt/en_ewt-ud-dev.iob2", False),
                                       ("ner/masakhaner2/hau/train.txt", False)])
def test_split_rule(path, test):
    p = settings.data_dir() / path
    assert datasets.is_test_file(p) is test
    if test:
        with pytest.raises(ValueError, match="test split; refusing to use it for tuning"):
            datasets.check_trainable(p, "tuning")
    else:
        assert datasets.check_trainable(p) == p


def test_synth_refuses_a_test_file(data_dir, tmp_path):
    r = subprocess.run([sys.executable, "-m", "llmie.cli", "synth", "--out", str(tmp_path / "s"), "--src",
                        str(datasets.uner_en("test"))], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "refusing to use it for synthetic training data" in r.stderr
