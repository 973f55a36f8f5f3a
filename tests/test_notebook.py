"""notebooks/prompt_experiments.ipynb runs top to bottom on the embedded model (nbclient, a real kernel)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

NB = Path(__file__).resolve().parents[1] / "notebooks" / "prompt_experiments.ipynb"


@pytest.mark.slow
def test_prompt_experiments_notebook_executes(data_dir, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")

    nb = nbformat.read(NB, as_version=4)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("LLMIE_NB_N", "2")  # sentences per language: the notebook's flow, at half its CI cost
    os.environ["LLMIE_DATA_DIR"] = str(data_dir)  # the kernel inherits it; it runs in tmp_path
    client = nbclient.NotebookClient(nb, timeout=1200, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = "\n".join(o.get("text", "") or str(o.get("data", {}).get("text/plain", ""))
                        for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "server stopped: True" in outputs
    assert "winning instruction:" in outputs
    assert "lf1_per_language.png" in outputs
