"""SFT rows and DPO pairs for the LLM projector, from PVP synthetic data (`llmie synth` folders).

One training point = one source span of a **verified** synthetic pair (`train.<lang>.jsonl`, meta.verified):
the prompt is exactly what `--method llm` sends (`llm.build_messages`), the answer `{"span": "<target>"}`.

DPO pairs (chosen = the verified projection; MASSIE App. H style negatives), by `kind`:
- `proposer`: a proposer's projection of the same pair that failed verification (`rejected.<lang>.jsonl`
  rows with spans, from any of the given synth folders, e.g. the binary proposer's rejects for a pair the
  awesome run verified);
- `boundary`: the verified span with one word more or one word less at either edge (punctuation-only
  changes skipped: they are too easy to tell apart);
- `sft`: the SFT model's own wrong predictions on the training points (`llmie project --method llm
  --adapter SFT_DIR --in train.<lang>.jsonl --out P.jsonl`, passed as `sft_predictions`).
A rejected answer is never equal to the chosen one (checked on the answer strings); duplicates are dropped;
kinds are interleaved so that the first N rows (`limit`) hold every kind.
Rows are plain JSON (conversational prompt/completion, prompt/chosen/rejected), loadable with
`datasets.load_dataset("json", data_files=...)` and by `llmie sft` / `llmie dpo` (`data.train_file`).
"""
from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmie.projection.llm import DEFAULT_TEMPLATE, answer_text, build_messages, load_template
from llmie.schema import LlmieDataError, ProjectionPair

DEFAULT_DIRS = ("runs/pvp-data", "runs/pvp-data-binary")


@dataclass(frozen=True)
class Point:
    pair: ProjectionPair
    index: int  # which source span

    @property
    def chosen(self) -> str:
        return self.pair.gold_tgt_spans[self.index].text  # type: ignore[index]


def _files(d: Path, prefix: str, langs: Sequence[str] | None) -> list[Path]:
    fs = sorted(d.glob(f"{prefix}.*.jsonl"))
    if langs:
        fs = [f for f in fs if f.name.split(".")[1] in langs]
    return fs


def _read(path: Path) -> Iterator[ProjectionPair]:
    from llmie.io import read_exp

    yield from read_exp(path)


def verified_pairs(dirs: Sequence[str | Path], langs: Sequence[str] | None = None,
                   split: str = "train") -> list[ProjectionPair]:
    """Verified pairs of `split` from the synth folders; an id seen in an earlier folder wins."""
    seen: dict[str, ProjectionPair] = {}
    any_file = False
    for d in map(Path, dirs):
        if not d.is_dir():
            raise FileNotFoundError(f"{d}: no such synth folder (make one with `llmie synth --out {d}`)")
        for f in _files(d, split, langs):
            any_file = True
            for p in _read(f):
                if p.meta.get("verified") is not True or not p.gold_tgt_spans:
                    continue
                seen.setdefault(p.id, p)
    if not any_file:
        raise FileNotFoundError(f"no {split}.<lang>.jsonl files in {', '.join(map(str, dirs))}")
    return list(seen.values())


def prompt_of(pt: Point, template: str = DEFAULT_TEMPLATE) -> list[dict[str, str]]:
    p, s = pt.pair, pt.pair.src.spans[pt.index]
    return build_messages(load_template(template), p.src.text, s.start, s.end, s.label, p.tgt_text, p.src.lang,
                          p.tgt_lang)


def points(pairs: Sequence[ProjectionPair]) -> list[Point]:
    return [Point(p, i) for p in pairs for i in range(len(p.src.spans))]


def build_sft_rows(dirs: Sequence[str] = DEFAULT_DIRS, langs: Sequence[str] | None = None, split: str = "train",
                   template: str = DEFAULT_TEMPLATE, limit: int | None = None, seed: int = 13) -> list[dict[str, Any]]:
    """Conversational prompt/completion rows, one per span of each verified pair (shuffled, seeded)."""
    pts = points(verified_pairs(dirs, langs, split))
    random.Random(seed).shuffle(pts)
    rows = [{"id": f"{pt.pair.id}#{pt.index}", "kind": "pvp", "prompt": prompt_of(pt, template),
             "completion": [{"role": "assistant", "content": answer_text(pt.chosen)}]} for pt in pts]
    return rows[:limit] if limit else rows


def boundary_variants(pair: ProjectionPair, index: int) -> list[str]:
    """The gold target span with one word more / less at either edge (changes of punctuation only skipped)."""
    from llmie.projection.words import segment, words_in_span

    g = pair.gold_tgt_spans[index]  # type: ignore[index]
    words = segment(pair.tgt_text)
    idx = words_in_span(words, g.start, g.end)  # type: ignore[arg-type]
    if not idx:
        return []
    a, b = idx[0], idx[-1]
    out = []
    for na, nb, edge in ((a - 1, b, a - 1), (a, b + 1, b + 1), (a + 1, b, a), (a, b - 1, b)):
        if na < 0 or nb >= len(words) or na > nb or words[edge].punct:
            continue
        if words[na].punct or words[nb].punct:
            continue
        out.append(pair.tgt_text[words[na].start:words[nb].end])
    return out


def _proposer_alternatives(dirs: Sequence[str | Path], langs: Sequence[str] | None,
                           split: str) -> dict[str, list[list[str]]]:
    """id -> list of rejected proposals (span texts by index) from every folder's rejected.<lang>.jsonl."""
    out: dict[str, list[list[str]]] = {}
    for d in map(Path, dirs):
        for f in _files(d, "rejected", langs):
            for p in _read(f):
                if p.gold_tgt_spans and p.meta.get("split", split) == split:
                    out.setdefault(p.id, []).append([s.text for s in p.gold_tgt_spans])
    return out


def _sft_predictions(path: str | Path) -> dict[str, list[str]]:
    """id -> predicted span texts (by index) from an `llmie project` output; failed records are skipped."""
    from llmie.io import read_jsonl

    out = {}
    for d in read_jsonl(path):
        if d.meta.get("status") == "ok":
            out[d.id] = [s.text for s in d.spans]
    return out


def build_dpo_pairs(dirs: Sequence[str] = DEFAULT_DIRS, langs: Sequence[str] | None = None, split: str = "train",
                    template: str = DEFAULT_TEMPLATE, boundary: int = 2, sft_predictions: str | None = None,
                    limit: int | None = None, seed: int = 13) -> list[dict[str, Any]]:
    """prompt/chosen/rejected rows (kinds proposer, boundary, sft); never chosen == rejected.

    `boundary`: at most this many boundary-perturbed negatives per point (0 = none), chosen at random.
    """
    rng = random.Random(seed)
    pairs = verified_pairs(dirs, langs, split)
    alts = _proposer_alternatives(dirs, langs, split)
    preds = _sft_predictions(sft_predictions) if sft_predictions else {}
    if sft_predictions and not preds:
        raise ValueError(f"{sft_predictions}: no successful predictions to mine negatives from")
    rows: list[dict[str, Any]] = []
    for pt in points(pairs):
        chosen = answer_text(pt.chosen)
        negs: list[tuple[str, str]] = []
        for alt in alts.get(pt.pair.id, []):
            if pt.index < len(alt):
                negs.append(("proposer", alt[pt.index]))
        pred = preds.get(pt.pair.id)
        if pred is not None and pt.index < len(pred):
            negs.append(("sft", pred[pt.index]))
        if boundary:
            var = boundary_variants(pt.pair, pt.index)
            rng.shuffle(var)
            negs.extend(("boundary", v) for v in var[:boundary])
        seen = {chosen}
        prompt = None
        for kind, text in negs:
            rej = answer_text(text)
            if rej in seen:  # the DPO invariant: never chosen == rejected, no duplicate pairs
                continue
            seen.add(rej)
            prompt = prompt or prompt_of(pt, template)
            rows.append({"id": f"{pt.pair.id}#{pt.index}", "kind": kind, "prompt": prompt,
                         "chosen": [{"role": "assistant", "content": chosen}],
                         "rejected": [{"role": "assistant", "content": rej}]})
    rows = interleave_kinds(rows, rng)
    return rows[:limit] if limit else rows


def interleave_kinds(rows: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """Shuffle within each kind, then take kinds in turn: any prefix (a `limit`, a few CPU steps) sees every
    kind, not ~98% boundary pairs (boundary variants outnumber the other kinds by far)."""
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["kind"], []).append(r)
    for v in by.values():
        rng.shuffle(v)
    out, queues = [], [by[k] for k in sorted(by)]
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop(0))
    return out


def check_pairs(rows: Sequence[dict[str, Any]]) -> None:
    """Raise when a DPO row has chosen == rejected (a pair that teaches nothing and breaks the loss)."""
    for i, r in enumerate(rows):
        if r["chosen"] == r["rejected"]:
            raise LlmieDataError("chosen equals rejected", record=str(r.get("id", i)), field="rejected")


def write_rows(rows: Sequence[dict[str, Any]], out: str | Path) -> dict[str, Any]:
    """Write rows as JSON lines (atomically) and return counts per kind."""
    import json
    import os

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    kinds: dict[str, int] = {}
    for r in rows:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    return {"rows": len(rows), "kinds": kinds, "out": str(out)}
