"""Only one job beyond pyproject.toml: ship the top-level prompts/ inside the wheel as llmie/_prompts.

Why: prompts/ stays the one, user-visible source (prompts are data files, versioned by name), and a
`pip install`ed llmie (outside any checkout) still resolves `massie.ner.v1` (llmie/prompts.py).
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PROMPT_FILES = ("*.yaml", "*.yml", "*.jinja")


class BuildPyWithPrompts(build_py):
    def run(self) -> None:
        super().run()
        src = Path(__file__).resolve().parent / "prompts"
        dst = Path(self.build_lib) / "llmie" / "_prompts"
        if not src.is_dir():
            raise FileNotFoundError(f"{src}: the prompts folder is missing from the source tree")
        shutil.rmtree(dst, ignore_errors=True)
        for pattern in PROMPT_FILES:
            for f in src.rglob(pattern):
                target = dst / f.relative_to(src)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, target)


setup(cmdclass={"build_py": BuildPyWithPrompts})
