"""`llmie report DIR [DIR...] --out report.html`: one static HTML page from the results of eval runs.

Why one self-contained file: it must open offline, be mailed or attached to an issue, and not depend on
a server or a CDN. Plots written by the runs (``em.png``, ...) are embedded as base64, styles are inline,
the only script is a few lines that filter the prediction viewer. Everything taken from the runs (texts,
labels, file names) is HTML-escaped, so a prediction cannot inject markup or script into the page.

Sections: a summary table (one row per run: bench, method, averages, manifest), one comparison table per
bench across runs (rows = dataset/language pair or language, columns = runs), each run's full table,
its plots, and a viewer of grounded predictions: spans highlighted in their text, coloured by alignment
status (extraction: exact / normalised / fuzzy; unaligned spans listed under the text) or, for label
projection, by agreement with the gold target span; failed records are marked.
"""
from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Colours are part of the contract with tests/test_report.py (the screenshot check looks for them).
COLORS = {
    "th": "#2d5f8a",           # table header
    "exact": "#8fe08f",        # grounded exactly / projection equals gold
    "normalised": "#9ecbff",
    "fuzzy": "#ffc966",
    "mismatch": "#ff9f9f",     # projection differs from gold
    "unaligned": "#ff9f9f",
    "projected": "#d9b3ff",    # projection without gold to compare
}

CSS = f"""
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1400px; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }}
h3 {{ font-size: 1.05em; }}
table {{ border-collapse: collapse; margin: .6em 0 1.2em; font-size: 13px; }}
th {{ background: {COLORS['th']}; color: #fff; padding: 4px 8px; text-align: left; }}
td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
td.k {{ text-align: left; font-family: monospace; }}
tr:nth-child(even) td {{ background: #f4f6f8; }}
td.best {{ font-weight: bold; }}
mark {{ padding: 1px 2px; border-radius: 3px; }}
mark.exact {{ background: {COLORS['exact']}; }} mark.normalised {{ background: {COLORS['normalised']}; }}
mark.fuzzy {{ background: {COLORS['fuzzy']}; }} mark.mismatch {{ background: {COLORS['mismatch']}; }}
mark.projected {{ background: {COLORS['projected']}; }}
mark sub {{ font-size: 9px; color: #333; margin-left: 2px; }}
.rec {{ border: 1px solid #ddd; border-radius: 4px; padding: 6px 10px; margin: 6px 0; line-height: 1.9; }}
.rec .id {{ font-family: monospace; font-size: 11px; color: #555; }}
.badge {{ display: inline-block; font-size: 11px; padding: 0 6px; border-radius: 8px; color: #fff; }}
.badge.failed {{ background: #c0392b; }} .badge.ok {{ background: #2e8b57; }} .badge.problem {{ background: #d68910; }}
.unal {{ font-size: 12px; color: #a00; }}
.gold {{ font-size: 12px; color: #555; }}
.legend mark {{ margin-right: 8px; }}
img {{ max-width: 100%; border: 1px solid #eee; }}
.meta {{ font-size: 12px; color: #444; }}
"""

JS = """
function onlyProblems(cb) {
  document.querySelectorAll('.rec').forEach(function (r) {
    r.style.display = (cb.checked && r.dataset.problem !== '1') ? 'none' : '';
  });
}
"""

_KEYED = ("files", "langs", "pairs")           # per dataset/language-pair (EXP, align) or per language (NER)
_MAIN = {"exp": ("em", "sm", "ep"), "align": ("aer",), "masakhaner": ("lf1", "f1", "seqeval_f1"),
         "uner": ("lf1", "f1", "seqeval_f1")}


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def find_runs(dirs: Sequence[str | Path]) -> list[Path]:
    """Run folders (holding results.json) under each DIR: the folder itself or any sub-folder."""
    out: list[Path] = []
    for d in dirs:
        p = Path(d)
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such folder")
        if (p / "results.json").exists():
            out.append(p)
        else:
            out.extend(sorted(r.parent for r in p.rglob("results.json")))
    if not out:
        raise FileNotFoundError(f"no results.json under {', '.join(map(str, dirs))}")
    return out


def _load_json(path: Path) -> dict[str, Any] | None:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        return obj if isinstance(obj, dict) else None
    except (OSError, ValueError):
        return None


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.2f}"
    return _e(v)


def _per_key(res: dict[str, Any]) -> tuple[str, dict[str, dict[str, Any]]] | None:
    for k in _KEYED:
        v = res.get(k)
        if isinstance(v, dict) and v and all(isinstance(x, dict) for x in v.values()):
            return k, v
    return None


def _numeric_cols(rows: dict[str, dict[str, Any]]) -> list[str]:
    cols: list[str] = []
    for r in rows.values():
        for c, v in r.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and c not in cols:
                cols.append(c)
    return cols


def run_table(res: dict[str, Any]) -> str:
    """The run's own table: one row per file/language, every numeric column."""
    pk = _per_key(res)
    if pk is None:
        flat = {k: v for k, v in res.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
        rows = "".join(f"<tr><td class='k'>{_e(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in flat.items())
        return f"<table><tr><th>key</th><th>value</th></tr>{rows}</table>"
    name, rows = pk
    cols = _numeric_cols(rows)
    head = "".join(f"<th>{_e(c)}</th>" for c in [name[:-1] if name.endswith("s") else name, *cols])
    body = []
    for key, r in rows.items():
        body.append("<tr><td class='k'>" + _e(key) + "</td>" + "".join(f"<td>{_fmt(r.get(c, ''))}</td>" for c in cols)
                    + "</tr>")
    avg = res.get("avg")
    if isinstance(avg, dict):
        body.append("<tr><td class='k'><b>average</b></td>" + "".join(
            f"<td><b>{_fmt(avg[c])}</b></td>" if c in avg else "<td></td>" for c in cols) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def compare_tables(runs: list[tuple[str, dict[str, Any]]]) -> str:
    """Per bench: rows = dataset/language (pair), columns = runs, one table per main metric."""
    by_bench: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for name, res in runs:
        by_bench.setdefault(str(res.get("bench", "?")), []).append((name, res))
    parts = []
    for bench, rs in by_bench.items():
        keyed = [(n, _per_key(r)) for n, r in rs]
        keyed = [(n, pk[1]) for n, pk in keyed if pk]
        if not keyed:
            continue
        metrics = [m for m in _MAIN.get(bench, ()) if any(m in row for _, rows in keyed for row in rows.values())]
        if not metrics:
            metrics = _numeric_cols(keyed[0][1])[:2]
        keys: list[str] = []
        for _, rows in keyed:
            keys += [k for k in rows if k not in keys]
        for m in metrics:
            lower_better = m in ("aer",)
            head = "<th>dataset / language</th>" + "".join(f"<th>{_e(n)}</th>" for n, _ in keyed)
            body = []
            for k in keys:
                vals = [rows.get(k, {}).get(m) for _, rows in keyed]
                nums = [v for v in vals if isinstance(v, (int, float))]
                best = (min(nums) if lower_better else max(nums)) if len(set(nums)) > 1 else None
                cells = "".join(f"<td class='{'best' if v == best else ''}'>{_fmt(v) if v is not None else '–'}</td>"
                                for v in vals)
                body.append(f"<tr><td class='k'>{_e(k)}</td>{cells}</tr>")
            parts.append(f"<h3>{_e(bench)}: {_e(m.upper())} by dataset/language and run</h3>"
                         f"<table><tr>{head}</tr>{''.join(body)}</table>")
    return "\n".join(parts)


def summary_table(runs: list[tuple[str, Path, dict[str, Any], dict[str, Any] | None]]) -> str:
    head = "<tr><th>run</th><th>bench</th><th>method</th><th>averages</th><th>command</th><th>git</th><th>finished</th></tr>"
    rows = []
    for name, _path, res, man in runs:
        avg = res.get("avg") if isinstance(res.get("avg"), dict) else {}
        avg_s = ", ".join(f"{k} {_fmt(v)}" for k, v in avg.items() if isinstance(v, (int, float)))
        cmd = " ".join(man.get("argv", [])) if man else ""
        git = (man.get("git") or {}).get("commit", "")[:10] if man else ""
        end = f"{man.get('end') or ''} ({man.get('status')})" if man else ""
        rows.append(f"<tr><td class='k'>{_e(name)}</td><td class='k'>{_e(res.get('bench', ''))}</td>"
                    f"<td class='k'>{_e(res.get('method', ''))}</td><td class='k'>{_e(avg_s)}</td>"
                    f"<td class='k'>{_e(cmd)}</td><td class='k'>{_e(git)}</td><td class='k'>{_e(end)}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _gold_for(res: dict[str, Any], key: str) -> dict[str, list[str]] | None:
    """Gold target span texts per id for an EXP prediction file (None if the data is not here)."""
    data = res.get("data")
    if res.get("bench") != "exp" or not data:
        return None
    root = Path(data)
    for cand in (root / f"{key}.test.jsonl", root / f"{key}.jsonl", root if root.is_file() else None):
        if cand is not None and cand.is_file():
            from llmie.io.jsonl import json_lines

            out = {}
            for _, obj in json_lines(cand):
                if isinstance(obj, dict) and isinstance(obj.get("tgt_spans"), list):
                    out[str(obj.get("id"))] = [s.get("text") for s in obj["tgt_spans"] if isinstance(s, dict)]
            return out
    return None


def render_record(d: dict[str, Any], gold: list[str] | None) -> tuple[str, bool]:
    """One prediction as HTML: its text with spans highlighted; returns (html, has a problem)."""
    text = d.get("text") if isinstance(d.get("text"), str) else ""
    spans = [s for s in d.get("spans") or [] if isinstance(s, dict)]
    meta = d.get("meta") if isinstance(d.get("meta"), dict) else {}
    statuses = meta.get("alignment_status") if isinstance(meta.get("alignment_status"), list) else None
    failed = meta.get("status") == "failed" or meta.get("parse_status") == "invalid"
    problem = failed
    marks, unaligned = [], []
    for i, s in enumerate(spans):
        st, en = s.get("start"), s.get("end")
        if statuses is not None and i < len(statuses):
            cls = str(statuses[i])
        elif gold is not None:
            cls = "exact" if s.get("text") in gold else "mismatch"
        else:
            cls = "projected"
        if cls not in ("exact",):
            problem = problem or cls in ("mismatch", "unaligned", "fuzzy")
        if not (isinstance(st, int) and isinstance(en, int) and 0 <= st <= en <= len(text)):
            unaligned.append(f"{s.get('label', '')}: {s.get('text', '')}")
            problem = True
            continue
        marks.append((st, en, cls, str(s.get("label", ""))))
    marks.sort()
    out, pos = [], 0
    for st, en, cls, label in marks:
        if st < pos:  # overlapping spans: show the later one after the first (never drop it silently)
            unaligned.append(f"{label}: {text[st:en]} (overlaps)")
            continue
        out.append(_e(text[pos:st]))
        out.append(f"<mark class='{_e(cls)}' title='{_e(label)} ({_e(cls)})'>{_e(text[st:en])}<sub>{_e(label)}</sub></mark>")
        pos = en
    out.append(_e(text[pos:]))
    if gold is not None and sorted(gold) != sorted(s.get("text") for s in spans):
        problem = True
    badge = ("<span class='badge failed'>failed</span> " + _e(meta.get("reason", ""))[:200]) if failed else \
        ("<span class='badge problem'>check</span>" if problem else "<span class='badge ok'>ok</span>")
    extra = ""
    if unaligned:
        extra += "<div class='unal'>unaligned: " + "; ".join(_e(u) for u in unaligned) + "</div>"
    if gold is not None:
        extra += "<div class='gold'>gold: " + "; ".join(_e(g) for g in gold) + "</div>"
    rec = (f"<div class='rec' data-problem='{int(problem)}'><span class='id'>{_e(d.get('id', ''))}</span> {badge}"
           f"<div>{''.join(out)}</div>{extra}</div>")
    return rec, problem


def viewer(run: Path, res: dict[str, Any], per_file: int) -> str:
    pred_root = run / "predictions"
    if not pred_root.is_dir():
        return "<p class='meta'>(no predictions/ folder)</p>"
    from llmie.io.jsonl import json_lines

    parts = []
    for f in sorted(pred_root.rglob("*.jsonl")):
        key = str(f.relative_to(pred_root).with_suffix(""))
        gold = _gold_for(res, key)
        recs, problems, n = [], 0, 0
        for _, obj in json_lines(f):
            if not isinstance(obj, dict):
                continue
            n += 1
            if len(recs) >= per_file:
                continue
            r, prob = render_record(obj, None if gold is None else gold.get(str(obj.get("id"))))
            problems += prob
            recs.append(r)
        parts.append(f"<h3>{_e(key)} <span class='meta'>({len(recs)} of {n} records shown, {problems} of them "
                     f"flagged)</span></h3>" + "".join(recs))
    return "\n".join(parts) or "<p class='meta'>(no prediction files)</p>"


def plots(run: Path) -> str:
    imgs = []
    for p in sorted(run.glob("*.png")) + sorted(run.glob("*.svg")):
        mime = "image/png" if p.suffix == ".png" else "image/svg+xml"
        data = base64.b64encode(p.read_bytes()).decode("ascii")
        imgs.append(f"<figure><img alt='{_e(p.name)}' src='data:{mime};base64,{data}'><figcaption class='meta'>"
                    f"{_e(p.name)}</figcaption></figure>")
    return "".join(imgs)


def _names(paths: list[Path]) -> list[str]:
    """Short unique run names: the folder name, with its parent when two runs share a name."""
    names = [p.name for p in paths]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]


def build_report(dirs: Sequence[str | Path], *, per_file: int = 40, title: str = "llmie report") -> str:
    paths = find_runs(dirs)
    runs = []
    for name, p in zip(_names(paths), paths):
        res = _load_json(p / "results.json")
        if res is None:
            continue
        runs.append((name, p, res, _load_json(p / "manifest.json")))
    legend = ("<p class='legend'>Spans: <mark class='exact'>exact / equals gold</mark><mark class='normalised'>"
              "normalised</mark><mark class='fuzzy'>fuzzy</mark><mark class='mismatch'>differs from gold</mark>"
              "<mark class='projected'>projected (no gold here)</mark></p>")
    body = [f"<h1>{_e(title)}</h1>", f"<p class='meta'>{len(runs)} run(s): "
            + ", ".join(_e(str(p)) for _, p, _, _ in runs) + "</p>",
            "<h2>Summary</h2>", summary_table(runs), "<h2>Comparison</h2>",
            compare_tables([(n, r) for n, _, r, _ in runs]) or "<p class='meta'>(nothing to compare)</p>"]
    for name, p, res, man in runs:
        body.append(f"<h2 id='run-{_e(name)}'>Run {_e(name)}</h2>")
        if man:
            body.append(f"<p class='meta'>llmie {_e(man.get('llmie_version'))}, started {_e(man.get('start'))}, "
                        f"ended {_e(man.get('end'))}, status {_e(man.get('status'))}; model "
                        f"{_e((man.get('model') or {}).get('spec', ''))}</p>")
        body.append(run_table(res))
        body.append(plots(p))
        body.append(f"<h3>Predictions of {_e(name)}</h3>")
        body.append(legend + "<label><input type='checkbox' onchange='onlyProblems(this)'> only flagged records"
                             "</label>")
        body.append(viewer(p, res, per_file))
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{_e(title)}</title><style>{CSS}</style><script>{JS}</script></head><body>"
            + "\n".join(body) + "</body></html>\n")


def write_report(dirs: Sequence[str | Path], out: str | Path, **kw: Any) -> Path:
    from llmie.io.atomic import atomic_write_text

    out = Path(out)
    atomic_write_text(out, build_report(dirs, **kw))
    return out
