"""A wheel installed outside the checkout runs `llmie extract` and `llmie project` (prompts ship in it).

Measured before: `pip wheel .` then `llmie extract` from the installed wheel failed with
`prompt template 'massie.ner.v1' not found (.../site-packages/prompts/...)`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """`pip wheel .` + `pip install --target` into a folder far from the checkout (deps: this venv's)."""
    tmp = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(tmp / "dist"), str(REPO)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    [whl] = (tmp / "dist").glob("llmie-*.whl")
    names = zipfile.ZipFile(whl).namelist()
    for p in (REPO / "prompts").rglob("*"):
        if p.suffix in (".yaml", ".jinja"):
            assert f"llmie/_prompts/{p.relative_to(REPO / 'prompts').as_posix()}" in names, p
    site = tmp / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(whl)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return site


def _llmie(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LLMIE_PROMPTS"}
    env.update(PYTHONPATH=str(site), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    # the console script the wheel installs (site/bin/llmie), run by this interpreter
    return subprocess.run([sys.executable, str(site / "bin" / "llmie"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_wheel_extract_and_project_outside_the_checkout(installed: Path, tmp_path: Path) -> None:
    r = _llmie(installed, tmp_path, "--version")
    assert r.returncode == 0 and r.stdout.startswith("llmie "), r.stderr
    where = subprocess.run([sys.executable, "-c", "import llmie, llmie.prompts as p; print(llmie.__file__); "
                            "print(p.find('massie.ner.v1'))"], cwd=tmp_path, capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(installed)})
    mod, prompt = where.stdout.split()
    assert mod.startswith(str(installed)) and prompt.startswith(str(installed / "llmie" / "_prompts")), where

    (tmp_path / "docs.txt").write_text("Barack Obama visited Paris.\nAngela Merkel lives in Berlin.\n",
                                       encoding="utf-8")
    r = _llmie(installed, tmp_path, "extract", "--task", "ner", "--labels", "PER,LOC", "--in", "docs.txt",
               "--out", "pred.jsonl", "--backend", "hf")
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    preds = [json.loads(x) for x in (tmp_path / "pred.jsonl").read_text(encoding="utf-8").splitlines()]
    assert summary["n"] == 2 and [p["id"] for p in preds] == ["0", "1"]
    assert all(p["meta"]["parse_status"] in ("ok", "repaired", "invalid") for p in preds)
    man = json.loads((tmp_path / "pred.jsonl.manifest.json").read_text())
    assert man["status"] == "ok" and man["prompt_template"]["path"].startswith(str(installed))

    pairs = [{"id": "a", "src_text": "Barack Obama visited Paris.", "tgt_text": "Barack Obama besuchte Paris.",
              "src_spans": [{"start": 0, "end": 12, "label": "PER", "text": "Barack Obama"},
                            {"start": 21, "end": 26, "label": "LOC", "text": "Paris"}]}]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
    r = _llmie(installed, tmp_path, "project", "--in", "pairs.jsonl", "--out", "proj.jsonl")
    assert r.returncode == 0, r.stderr[-3000:]
    [doc] = [json.loads(x) for x in (tmp_path / "proj.jsonl").read_text(encoding="utf-8").splitlines()]
    assert doc["meta"]["status"] == "ok"
    assert [(s["text"], s["label"]) for s in doc["spans"]] == [("Barack Obama", "PER"), ("Paris", "LOC")]
