"""Device check: every encoder component runs on the requested device and agrees with the CPU.

Why a script: the dev machine and CI have no GPU, and a lent GPU machine has 15 minutes, no registry and no
llmie model cache. So this builds a tiny BERT (random weights, a vocabulary of the words it needs) and tiny
word-alignment / CoNLL-U files in a temp folder, then on DEVICE (default auto = CUDA when present):
  1. the device rule (`llmie.device.resolve_device`),
  2. awesome inference (float32): model on the device, alignments equal to the CPU's,
  3. `train_binary_aligner` and `train_projector` (PVP) a few steps: the recorded device and loss, then
     binary/pvp inference of the trained folders on the device vs the CPU (agreement, bf16 on CUDA),
  4. `topro.train` a few steps and `topro.train.load` onto the device,
  5. the speed ratio of awesome inference CPU / device on a larger batch.
A tiny random model checks placement and agreement, not quality. Prints one JSON object (also written to
$OUT/device_check.json when OUT is set); exit 1 when a check fails.

    DEVICE=cpu python eval/device_check.py        # runs here (tests/test_device.py does)
    bash eval/device_check.sh                       # on the GPU machine
"""
from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EN_FR = [
    ("Anna Berg lives in Lyon .", "Anna Berg habite à Lyon .", "1-1 2-2 3-3 4-4 5-5 6-6"),
    ("The bank of Paris opened today .", "La banque de Paris a ouvert aujourd'hui .", "1-1 2-2 3-3 4-4 5-5 5-6 6-7 7-8"),
    ("Marie Curie won the prize .", "Marie Curie a gagné le prix .", "1-1 2-2 3-3 3-4 4-5 5-6 6-7"),
    ("John works for the United Nations .", "John travaille pour les Nations Unies .", "1-1 2-2 3-3 4-4 5-6 6-5 7-7"),
    ("We met Peter in Berlin .", "Nous avons rencontré Peter à Berlin .", "1-1 2-2 2-3 3-4 4-5 5-6 6-7"),
    ("The river flows to the sea .", "La rivière coule vers la mer .", "1-1 2-2 3-3 4-4 5-5 6-6 7-7"),
    ("Sara visited Rome last year .", "Sara a visité Rome l'année dernière .", "1-1 2-2 2-3 3-4 4-6 5-5 6-7"),
    ("The company hired Tom .", "L'entreprise a embauché Tom .", "1-1 2-1 3-2 3-3 4-4 5-5"),
]
CONLLU = [
    [("Anna", "PROPN"), ("lives", "VERB"), ("in", "ADP"), ("Lyon", "PROPN"), (".", "PUNCT")],
    [("The", "DET"), ("river", "NOUN"), ("flows", "VERB"), ("to", "ADP"), ("the", "DET"), ("sea", "NOUN"),
     (".", "PUNCT")],
    [("We", "PRON"), ("met", "VERB"), ("Peter", "PROPN"), ("today", "ADV"), (".", "PUNCT")],
    [("Tom", "PROPN"), ("and", "CCONJ"), ("Sara", "PROPN"), ("won", "VERB"), ("two", "NUM"), ("prizes", "NOUN"),
     (".", "PUNCT")],
]


def build_tiny_bert(folder: Path) -> Path:
    """A random 2-layer BERT MLM + a WordPiece vocabulary covering the data and the TOPRO templates' words."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    words: set[str] = set()
    texts = [s + " " + t for s, t, _ in EN_FR] + [" ".join(w for w, _ in s) for s in CONLLU]
    for p in (ROOT / "prompts" / "topro").glob("*.yaml"):
        texts.append(p.read_text(encoding="utf-8"))
    for t in texts:
        words.update(w.lower() for w in re.findall(r"\w+", t))
    chars = sorted({c for t in texts for c in t.lower() if not c.isspace()})
    vocab = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars if c.isalnum()]
             + sorted(words - set(chars)))
    folder.mkdir(parents=True, exist_ok=True)
    vocab = list(dict.fromkeys(vocab))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # transformers 5 builds from `vocab` (a vocab_file alone gives a 5-token tokenizer), 4.x from vocab_file
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    if len(tok) < len(vocab):
        tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    if len(tok) != len(vocab) or tok.tokenize("Lyon")[0] != "lyon":
        raise RuntimeError(f"tiny tokenizer not built: {len(tok)} tokens of {len(vocab)}")
    cfg = BertConfig(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=128, max_position_embeddings=256)
    import torch

    torch.manual_seed(0)
    BertForMaskedLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def write_data(root: Path) -> tuple[Path, Path]:
    wa = root / "word_alignment"
    wa.mkdir(parents=True, exist_ok=True)
    (wa / "enfr.src-tgt").write_text("".join(f"{s} ||| {t}\n" for s, t, _ in EN_FR), encoding="utf-8")
    (wa / "enfr.gold").write_text("".join(f"{g}\n" for _, _, g in EN_FR), encoding="utf-8")
    rows = []
    for i, sent in enumerate(CONLLU):
        rows.append(f"# sent_id = s{i}\n# text = {' '.join(w for w, _ in sent)}")
        rows += [f"{j + 1}\t{w}\t{w.lower()}\t{t}\t_\t_\t0\t_\t_\t_" for j, (w, t) in enumerate(sent)]
        rows.append("")
    conllu = root / "tiny.conllu"
    conllu.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return wa, conllu


def main() -> int:
    import torch

    torch.set_num_threads(int(os.environ.get("THREADS", "1")))
    from llmie.device import model_device, resolve_device

    want = os.environ.get("DEVICE", "auto")
    report: dict = {"requested": want, "torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
                    "checks": {}}
    failed: list[str] = []

    def check(name: str, fn) -> None:
        t0 = time.perf_counter()
        try:
            res = fn()
            ok = bool(res.pop("ok", True))
        except Exception as e:  # noqa: BLE001  a device check reports every failure, then exits 1
            res, ok = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-1500:]}, False
        res["ok"], res["seconds"] = ok, round(time.perf_counter() - t0, 2)
        report["checks"][name] = res
        if not ok:
            failed.append(name)

    dev = resolve_device(want)
    report["device"] = str(dev)
    if torch.cuda.is_available():
        report["gpu"] = torch.cuda.get_device_name(0)
    tmp = Path(tempfile.mkdtemp(prefix="llmie-device-"))
    model = str(build_tiny_bert(tmp / "tiny-bert"))
    wa, conllu = write_data(tmp)

    from llmie.io import read_alignment, write_exp
    from llmie.projection.words import segment
    from llmie.projection.synth import phrases_from_alignment

    sents = list(read_alignment(wa / "enfr.src-tgt", wa / "enfr.gold"))
    pairs = phrases_from_alignment(sents)
    write_exp(pairs, tmp / "train.jsonl")
    texts = [(s, t) for s, t, _ in EN_FR]
    sw, tw = [segment(s) for s, _ in texts], [segment(t) for _, t in texts]

    def rule():
        auto = resolve_device("auto")
        return {"auto": str(auto), "ok": auto.type == ("cuda" if torch.cuda.is_available() else "cpu")}

    def awesome():
        from llmie.projection.awesome import AwesomeAligner

        on = AwesomeAligner(model, layer=2, dtype="float32", device=str(dev))
        cpu = AwesomeAligner(model, layer=2, dtype="float32", device="cpu")
        a, b = on.word_alignments(texts, sw, tw), cpu.word_alignments(texts, sw, tw)
        same = sum(bool((x == y).all()) for x, y in zip(a, b))
        return {"model_device": str(on.encoder.device), "same_as_cpu": f"{same}/{len(a)}",
                "ok": on.encoder.device.type == dev.type and same == len(a)}

    def on_device(method: str, folder: Path, net) -> dict:
        """A trained folder's recorded training device, the loaded model's device and the projections' agreement
        with the same folder on the CPU (one rule for binary and pvp)."""
        from llmie.projection.project import project

        tr = json.loads((folder / "aligner.json").read_text())["training"]
        runs = [[d.spans for d in project(pairs, method, model, adapter=str(folder), device=d)]
                for d in (str(dev), "cpu")]
        agree = round(sum(x == y for x, y in zip(*runs)) / max(1, len(pairs)), 3)
        place = model_device(net).type
        return {"train_device": tr.get("device"), "model_device": place, "projection_agreement_with_cpu": agree,
                "training": tr, "ok": place == dev.type and str(tr.get("device")).startswith(dev.type)}

    def binary():
        from llmie.projection.binary import BinaryAligner
        from llmie.projection.train_binary import load_recipe, train_binary_aligner

        cfg = load_recipe(None, ["pairs=[enfr]", "eval_sents=0", "eval_every=0", "batch_size=4", "max_steps=3",
                                 "log_every=1", "max_length=64", f"model={model}", f"data={wa}", f"device={dev}",
                                 f"out={tmp / 'binary'}"])
        folder = train_binary_aligner(cfg)
        res = on_device("binary", folder, BinaryAligner(model, adapter=str(folder), device=str(dev)).model)
        res["losses"] = res.pop("training").get("losses")
        return res

    def pvp():
        from llmie.projection.pvp import PVPProjector
        from llmie.projection.train_pvp import train_projector

        out = train_projector({"model": model, "layers": 2, "train": [str(tmp / "train.jsonl")], "dev": [],
                               "max_steps": 3, "batch_size": 4, "eval_every": 0, "log_every": 1, "max_length": 64,
                               "device": str(dev), "out": str(tmp / "pvp")})
        res = on_device("pvp", out, PVPProjector(model, adapter=str(out), device=str(dev)).model)
        res["final_loss"] = res.pop("training").get("final_loss")
        return res

    def topro():
        from llmie.topro.train import ToproTrainConfig, load, save, train

        t = train(ToproTrainConfig(task="pos", model=model, train=str(conllu), n_train=4, max_steps=2,
                                   batch_size=2, max_length=64, device=str(dev)))
        trained = model_device(t.model).type
        save(t, tmp / "topro")
        back = model_device(load(tmp / "topro", device=str(dev)).model).type
        return {"train_model_device": trained, "loaded_device": back,
                "ok": trained == dev.type and back == dev.type}

    def speed():
        if dev.type == "cpu":
            return {"skipped": "device is the CPU"}
        from llmie.projection.awesome import AwesomeAligner

        big_t, big_s, big_w = texts * 16, sw * 16, tw * 16
        out = {}
        for d in ("cpu", str(dev)):
            al = AwesomeAligner(model, layer=2, device=d)
            al.word_alignments(big_t[:8], big_s[:8], big_w[:8])   # warm-up
            t0 = time.perf_counter()
            al.word_alignments(big_t, big_s, big_w)
            out[d] = round(time.perf_counter() - t0, 4)
        out["cpu_over_device"] = round(out["cpu"] / max(out[str(dev)], 1e-9), 2)
        return out

    for name, fn in (("rule", rule), ("awesome", awesome), ("binary", binary), ("pvp", pvp), ("topro", topro),
                     ("speed", speed)):
        check(name, fn)
    report["failed"] = failed
    text = json.dumps(report, indent=1, default=str)
    print(text)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "device_check.json").write_text(text, encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
