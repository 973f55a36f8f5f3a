"""Encoder TOPRO (masked LM over label words) and the vanilla token-classification baseline.

TOPRO: the prompt ``[CLS] sentence [SEP] The pos tag of w is a kind of: [MASK] . [SEP]`` is encoded
and the masked-LM logits at [MASK] are restricted to the verbalizer tokens; training is cross-entropy
over that label set (PET-style, as in the authors' code), prediction is the argmax over it.

MLM head: any ``*ForMaskedLM`` checkpoint (xlm-roberta-base, bert-base-multilingual-cased) is used as is
(its own head, applied at the [MASK] positions only). The embedded encoder (multilingual-e5-small) is a
bare ``BertModel`` with no MLM head, so one is built: ``LayerNorm(gelu(dense(h)))`` followed by a
decoder *tied to the input word embeddings* plus a per-vocabulary bias. The transform starts as the
identity map (dense = I, bias 0), so before training a label word scores by the similarity of the
[MASK] state to its input embedding; the transform and bias are trained with the encoder.

Vanilla: ``AutoModelForTokenClassification`` on the same encoder, first sub-word of each word labelled
(later pieces get -100), one pass per sentence.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from llmie.topro.decompose import Prompt, Template, encoder_pair



def _is_mlm(path: str) -> bool:
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(path)
    return any(a.endswith("ForMaskedLM") for a in (cfg.architectures or []))


class TiedMLMHead(nn.Module):
    """dense + gelu + LayerNorm transform, decoder tied to the input embeddings, trained vocab bias."""

    def __init__(self, embeddings: nn.Embedding, eps: float = 1e-12) -> None:
        super().__init__()
        h = embeddings.weight.shape[1]
        self.embeddings = embeddings          # shared module: not a copy
        self.dense = nn.Linear(h, h)
        self.norm = nn.LayerNorm(h, eps=eps)
        self.bias = nn.Parameter(torch.zeros(embeddings.weight.shape[0]))
        with torch.no_grad():
            self.dense.weight.copy_(torch.eye(h))
            self.dense.bias.zero_()

    def forward(self, hidden: torch.Tensor, token_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Logits over ``token_ids`` (default: the whole vocabulary) for hidden states ``[N, H]``."""
        x = self.norm(nn.functional.gelu(self.dense(hidden)))
        w, b = self.embeddings.weight, self.bias
        if token_ids is not None:
            w, b = w[token_ids], b[token_ids]
        return x @ w.T + b

    def state_dict_own(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("embeddings.")}


class ToproMLM(nn.Module):
    """Encoder + MLM head scoring only the label tokens at the [MASK] position."""

    def __init__(self, path: str, label_token_ids: Sequence[int]) -> None:
        super().__init__()
        from transformers import AutoModel, AutoModelForMaskedLM

        self.path = path
        # a buffer, so `.to(device)` moves it with the model (not saved: the verbalizer records the ids)
        self.register_buffer("label_ids", torch.tensor(list(label_token_ids), dtype=torch.long), persistent=False)
        self.native = _is_mlm(path)
        if self.native:
            self.mlm = AutoModelForMaskedLM.from_pretrained(path)
            self.encoder = self.mlm.base_model
            self.head = next((getattr(self.mlm, n) for n in ("cls", "lm_head") if hasattr(self.mlm, n)), None)
            self.head_kind = "native"
        else:
            self.encoder = AutoModel.from_pretrained(path, add_pooling_layer=False) if _is_bert(path) \
                else AutoModel.from_pretrained(path)
            eps = getattr(self.encoder.config, "layer_norm_eps", 1e-12)
            self.head = TiedMLMHead(self.encoder.get_input_embeddings(), eps)
            self.head_kind = "tied-built"

    def forward(self, input_ids, attention_mask, mask_pos, token_type_ids=None) -> torch.Tensor:
        """Logits ``[B, n_labels]`` at each row's [MASK] position (``mask_pos`` [B])."""
        kw = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        if self.native and self.head is None:  # unknown head layout: full forward (slower, still correct)
            logits = self.mlm(input_ids=input_ids, attention_mask=attention_mask, **kw).logits
            return logits[torch.arange(len(mask_pos), device=logits.device), mask_pos][:, self.label_ids]
        hid = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kw).last_hidden_state
        h = hid[torch.arange(len(mask_pos), device=hid.device), mask_pos]
        if self.native:
            return self.head(h)[:, self.label_ids]
        return self.head(h, self.label_ids)

    def freeze_word_embeddings(self) -> None:
        self.encoder.get_input_embeddings().weight.requires_grad_(False)

    def input_embeddings(self) -> nn.Embedding:
        return self.encoder.get_input_embeddings()


def _is_bert(path: str) -> bool:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(path).model_type == "bert"


def encode_prompts(tokenizer, template: Template, prompts: Sequence[Prompt], max_length: int = 128) -> dict:
    """Tokenize (sentence, question) pairs; the sentence side is truncated first; returns tensors + mask_pos."""
    pairs = [encoder_pair(template, p, tokenizer.mask_token) for p in prompts]
    enc = tokenizer([a for a, _ in pairs], [b for _, b in pairs], truncation="only_first", max_length=max_length,
                    padding=True, return_tensors="pt")
    is_mask = enc["input_ids"] == tokenizer.mask_token_id
    if not bool((is_mask.sum(1) == 1).all()):
        bad = int((is_mask.sum(1) != 1).nonzero()[0, 0])
        raise ValueError(f"prompt for word {prompts[bad].word!r} (sentence {prompts[bad].sent}) does not hold "
                         "exactly one mask token after tokenization")
    out = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
    out["mask_pos"] = is_mask.float().argmax(1)
    return out


def batches_by_length(n: int, lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Index batches of similar length (less padding); order inside the result is by length."""
    order = sorted(range(n), key=lambda i: lengths[i])
    return [order[s:s + batch_size] for s in range(0, n, batch_size)]


@torch.inference_mode()
def predict_topro(model: ToproMLM, tokenizer, template: Template, prompts: Sequence[Prompt],
                  batch_size: int = 64, max_length: int = 128) -> tuple[list[int], int]:
    """Label index per prompt (argmax over the verbalizer tokens) and the number of forward passes.
    Batches go to the model's device."""
    from llmie.device import model_device, to_device

    dev = model_device(model)
    model.eval()
    lens = [len(p.sentence) + len(p.word) for p in prompts]
    preds = [0] * len(prompts)
    n_fw = 0
    for idx in batches_by_length(len(prompts), lens, batch_size):
        enc = encode_prompts(tokenizer, template, [prompts[i] for i in idx], max_length)
        logits = model(**to_device(enc, dev))
        n_fw += 1
        for i, k in zip(idx, logits.argmax(-1).tolist()):
            preds[i] = k
    return preds, n_fw


# --------------------------------------------------------------------------- vanilla baseline


def load_vanilla(path: str, labels: Sequence[str]):
    from transformers import AutoModelForTokenClassification

    return AutoModelForTokenClassification.from_pretrained(
        path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})


def encode_words(tokenizer, sentences: Sequence[Sequence[str]], tags: Sequence[Sequence[int]] | None = None,
                 max_length: int = 128) -> tuple[dict, list[list[int]]]:
    """Sub-word encoding of word lists; labels on first pieces (-100 elsewhere); per sentence the
    position of each word's first piece (-1 when truncated away)."""
    enc = tokenizer([list(s) for s in sentences], is_split_into_words=True, truncation=True, max_length=max_length,
                    padding=True, return_tensors="pt")
    first: list[list[int]] = []
    labels = torch.full(enc["input_ids"].shape, -100, dtype=torch.long)
    for b, s in enumerate(sentences):
        pos = [-1] * len(s)
        prev = None
        for j, w in enumerate(enc.word_ids(b)):
            if w is not None and w != prev:
                pos[w] = j
                if tags is not None:
                    labels[b, j] = tags[b][w]
            prev = w
        first.append(pos)
    out = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
    if tags is not None:
        out["labels"] = labels
    return out, first


@torch.inference_mode()
def predict_vanilla(model, tokenizer, sentences: Sequence[Sequence[str]], batch_size: int = 32,
                    max_length: int = 128, default: int = 0) -> tuple[list[list[int]], int]:
    """Label index per word (words cut by truncation get ``default``) and the number of forward passes.
    Batches go to the model's device."""
    from llmie.device import model_device, to_device

    dev = model_device(model)
    model.eval()
    out: list[list[int]] = [[] for _ in sentences]
    n_fw = 0
    for idx in batches_by_length(len(sentences), [len(" ".join(s)) for s in sentences], batch_size):
        enc, first = encode_words(tokenizer, [sentences[i] for i in idx], max_length=max_length)
        arg = model(**to_device(enc, dev)).logits.argmax(-1).cpu()
        n_fw += 1
        for b, i in enumerate(idx):
            out[i] = [int(arg[b, j]) if j >= 0 else default for j in first[b]]
    return out, n_fw
