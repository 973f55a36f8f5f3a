"""`llmie report` (issue 11): a real eval run rendered to one offline HTML page, checked in headless Chromium.

The page is built from a real `llmie eval --bench exp` output (embedded encoder, a few pairs) plus an
extraction run folder whose predictions carry every alignment status, then rendered by Debian's
chromium (`--headless --screenshot`); PIL checks that the table header and the highlight colours are
on the screenshot. Skipped, with the reason, only when no chromium binary is installed.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llmie.report import COLORS, build_report

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
HOSTILE = "<script>document.title='pwned'</script>"


def _extraction_run(root: Path) -> Path:
    """An extraction run folder as `llmie eval --bench masakhaner --out` writes it (results + predictions)."""
    run = root / "ner-run"
    (run / "predictions").mkdir(parents=True)
    res = {"bench": "masakhaner", "method": "massie", "langs": {"hau": {"n": 2, "lf1": 61.5, "f1": 40.0,
                                                                        "seqeval_f1": 33.3}},
           "avg": {"lf1": 61.5, "f1": 40.0}}
    (run / "results.json").write_text(json.dumps(res))
    text = "Aminu Kano ya je Abuja tare da Bola Tinubu " + HOSTILE
    spans = [{"start": 0, "end": 10, "label": "PER", "text": "Aminu Kano"},
             {"start": 17, "end": 22, "label": "LOC", "text": "Abuja"},
             {"start": 31, "end": 42, "label": "PER", "text": "Bola Tinubu"},
             {"start": None, "end": None, "label": "ORG", "text": "Majalisa"}]
    rec = {"id": "hau-1", "text": text, "spans": spans,
           "meta": {"parse_status": "ok", "alignment_status": ["exact", "normalised", "fuzzy", "unaligned"]}}
    bad = {"id": "hau-2", "text": "babu", "spans": [], "meta": {"parse_status": "invalid"}}
    (run / "predictions" / "hau.jsonl").write_text(json.dumps(rec) + "\n" + json.dumps(bad) + "\n")
    return run


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("report") / "exp-awesome"
    r = subprocess.run([sys.executable, "-m", "llmie.cli", "eval", "--bench", "exp", "--pairs", "en-tr",
                        "--limit", "8", "--out", str(out)], cwd=REPO, env=ENV, capture_output=True, text=True,
                       timeout=400)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


@pytest.mark.slow
def test_report_html(eval_run: Path, tmp_path: Path) -> None:
    ner = _extraction_run(tmp_path)
    html_path = tmp_path / "report.html"
    r = subprocess.run([sys.executable, "-m", "llmie.cli", "report", str(eval_run), str(ner), "--out",
                        str(html_path)], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    page = html_path.read_text(encoding="utf-8")
    assert "relx/en-tr" in page and "data:image/png;base64," in page  # table row and the em.png plot
    assert HOSTILE not in page and "&lt;script&gt;" in page           # prediction text escaped
    assert "http://" not in page and "https://" not in page            # nothing fetched: opens offline
    for cls in ("exact", "normalised", "fuzzy"):
        assert f"<mark class='{cls}'" in page
    assert "unaligned: ORG: Majalisa" in page and "badge failed" in page
    res = json.loads((eval_run / "results.json").read_text())
    assert f"{res['files']['relx/en-tr']['em']:.2f}" in page
    man = json.loads((eval_run / "manifest.json").read_text())
    assert man["status"] == "ok" and " ".join(man["argv"]) in page


def test_report_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such folder"):
        build_report([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no results.json"):
        build_report([tmp_path / "empty"])


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _hex(c: str) -> tuple[int, int, int]:
    return int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16)


@pytest.mark.slow
def test_report_renders_in_headless_chromium(eval_run: Path, tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium binary (scripts/setup.sh installs Debian's chromium when run as root)")
    from PIL import Image

    html_path = tmp_path / "report.html"
    html_path.write_text(build_report([eval_run, _extraction_run(tmp_path)], per_file=3), encoding="utf-8")
    shot = tmp_path / "shot.png"
    r = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1300,4000",
                        f"--screenshot={shot}", html_path.as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.exists(), r.stderr[-2000:]
    img = Image.open(shot).convert("RGB")
    counts = dict.fromkeys(("th", "exact", "normalised", "fuzzy", "mismatch"), 0)
    targets = {k: _hex(COLORS[k]) for k in counts}
    for px in img.get_flattened_data() if hasattr(img, 'get_flattened_data') else img.getdata():
        for k, t in targets.items():
            if abs(px[0] - t[0]) <= 3 and abs(px[1] - t[1]) <= 3 and abs(px[2] - t[2]) <= 3:
                counts[k] += 1
    print(f"\nscreenshot {img.size}: pixels per colour {counts}")
    assert counts["th"] > 2000, counts       # table headers rendered
    for k in ("exact", "normalised", "fuzzy", "mismatch"):
        assert counts[k] > 100, (k, counts)  # highlighted spans rendered in their status colour
