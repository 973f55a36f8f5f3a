"""Apertium rule-based MT (Debian packages), run as `apertium -u <pair>` without a shell.

Install (Debian/Ubuntu, root): `apt-get install -y apertium apertium-eng-spa` (more pairs: `apt-cache search
'^apertium-'`). Directions are discovered from `apertium -l` (mode names such as `eng-spa`, `spa-eng_US`,
`en-gl`, `eo-en`), so any installed pair works and both 3-letter and 2-letter pair names are handled.

Batching: all texts go through one pipeline in null-flush mode (`apertium -u -z -f none <pair>`): each text is
escaped into Apertium stream format and terminated by `\\0`, and the pipeline answers with one `\\0`-terminated
translation per text. That keeps texts apart even when they lack final punctuation (with plain one-text-per-line
input the transfer rules reorder words across lines while the line count still matches). Newlines inside a text
become spaces. If the batch answer does not have one part per text, each text is retried on its own.

One caveat: apertium-tagger keeps some state across texts in one run, so a batch can differ from one-text calls
by the odd word (7 of 100 EWT dev sentences: a verb or noun reading). `isolate=True` runs one process per text
(exactly `echo text | apertium -u pair`, ~0.35 s per text) when that matters more than speed.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from llmie.mt.base import BaseTranslator, lang3

# Apertium stream format: these characters are escaped by apertium-destxt; `~`, tabs and runs of spaces
# become superblanks (`[...]`) so they pass through untouched.
_ESCAPE = re.compile(r"([\\^$/<>@{}\[\]])")
_BLANKS = re.compile(r"(~|\t+| {2,})")
_UNESCAPE = re.compile(r"\\(.)|\[([^\]\\]*)\]", re.S)
_SENT_FINAL = re.compile(r"[.!?\u2026]\W*$")


def escape(text: str) -> str:
    text = text.replace("\0", " ").replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    return _BLANKS.sub(lambda m: f"[{m.group(1)}]", _ESCAPE.sub(r"\\\1", text))


def unescape(text: str) -> str:
    return _UNESCAPE.sub(lambda m: m.group(1) if m.group(1) is not None else m.group(2), text)


def parse_mode(mode: str) -> tuple[str, str] | None:
    """`'eng-spa'` -> `('eng', 'spa')`; `'spa-eng_US'` -> `('spa', 'eng')`; `'en-gl'` -> `('eng', 'glg')`."""
    parts = mode.strip().split("-")
    if len(parts) != 2:
        return None
    try:
        return lang3(parts[0].split("_")[0]), lang3(parts[1].split("_")[0])
    except (ValueError, LookupError):  # e.g. hbs's transliteration mode `Cyrl-Latn` is no language pair
        return None


class ApertiumTranslator(BaseTranslator):
    """`apertium -u <pair>` for every installed pair; `pairs()` lists them as ISO 639-3 tuples."""

    name = "apertium"

    def __init__(self, *, binary: str = "apertium", datadir: str | Path | None = None, timeout: float = 300.0,
                 isolate: bool = False, max_batch_chars: int = 200_000):
        self.binary = shutil.which(binary) or binary
        self.datadir = str(datadir) if datadir else None
        self.timeout = timeout
        self.isolate = isolate
        self.max_batch_chars = max_batch_chars
        self.model_id = f"datadir={self.datadir}" if self.datadir else ""
        self._modes: dict[tuple[str, str], str] | None = None

    def available(self) -> bool:
        return shutil.which(self.binary) is not None

    def _base_cmd(self) -> list[str]:
        return [self.binary] + (["-d", self.datadir] if self.datadir else [])

    def modes(self) -> dict[tuple[str, str], str]:
        """(src, tgt) 639-3 -> mode name; a plain mode (`spa-eng`) wins over a variant (`spa-eng_US`)."""
        if self._modes is None:
            found: dict[tuple[str, str], str] = {}
            names: list[str] = []
            if self.available():
                try:
                    r = subprocess.run(self._base_cmd() + ["-l"], capture_output=True, text=True, timeout=60)
                    names = r.stdout.split()
                except (OSError, subprocess.SubprocessError):
                    names = []
                if not names and self.datadir:
                    names = [p.stem for p in (Path(self.datadir) / "modes").glob("*.mode")]
            for mode in sorted(names, key=lambda m: ("_" in m, m)):
                key = parse_mode(mode)
                if key and key[0] != key[1] and key not in found:
                    found[key] = mode
            self._modes = found
        return self._modes

    def pairs(self) -> set[tuple[str, str]]:
        return set(self.modes())

    def _hint(self) -> str:
        if not self.available():
            return "the `apertium` binary is not installed (Debian: apt-get install -y apertium apertium-eng-spa)"
        return "install more pairs with apt-get (apt-cache search '^apertium-')"

    def mode_for(self, src: str, tgt: str) -> str:
        """The Apertium mode name for a direction, e.g. `mode_for('en', 'es') == 'eng-spa'`."""
        self.check_direction(src, tgt)  # raises UnsupportedDirection listing the installed pairs
        return self.modes()[(lang3(src), lang3(tgt))]

    # ----------------------------------------------------------------- running
    def _run(self, args: list[str], data: str, n_texts: int) -> str:
        try:
            r = subprocess.run(self._base_cmd() + args, input=data.encode("utf-8"), capture_output=True,
                               timeout=self.timeout + 0.05 * n_texts)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"apertium {' '.join(args)} timed out after {e.timeout:.0f}s on {n_texts} texts") from e
        if r.returncode != 0:
            err = r.stderr.decode("utf-8", "replace").strip()[-500:]
            raise RuntimeError(f"apertium {' '.join(args)} failed (exit {r.returncode}): {err}")
        return r.stdout.decode("utf-8", "replace")

    def _one(self, text: str, mode: str) -> str:
        """The reference path: plain-text format, one process."""
        return self._run(["-u", mode], text.replace("\n", " ").replace("\r", " "), 1).strip()

    def _null_flush(self, texts: list[str], mode: str) -> list[str] | None:
        # Like apertium-destxt, end every text with a sentence mark the pipeline can close on; we add "."
        # only where the text has none and take it off the output again.
        added = [not _SENT_FINAL.search(t.rstrip()) for t in texts]
        data = "".join(escape(t.rstrip()) + ("." if a else "") + "[]\0" for t, a in zip(texts, added))
        parts = self._run(["-u", "-z", "-f", "none", mode], data, len(texts)).split("\0")
        # The pipeline ends with extra empty flushes; anything non-blank past our texts means misalignment.
        if len(parts) < len(texts) or any(p.strip() for p in parts[len(texts):]):
            return None
        out = []
        for p, a in zip(parts, added):
            p = unescape(p).strip()
            if a and p.endswith("."):
                p = p[:-1].rstrip()
            out.append(p)
        return out

    def _translate_batch(self, texts: list[str], src: str, tgt: str) -> list[str]:
        mode = self.modes()[(lang3(src), lang3(tgt))]
        if self.isolate:
            return [self._one(t, mode) for t in texts]
        out: list[str] = []
        start = 0
        while start < len(texts):  # bounded batches keep memory and the timeout in proportion
            end, size = start, 0
            while end < len(texts) and (end == start or size + len(texts[end]) <= self.max_batch_chars):
                size += len(texts[end])
                end += 1
            chunk = texts[start:end]
            res = self._null_flush(chunk, mode)
            out.extend(res if res is not None else [self._one(t, mode) for t in chunk])
            start = end
        return out
