"""Metrics (DESIGN.md §3): LF1 / exact F1, EXP EM/SM/EP, seqeval and token-level F1."""
from llmie.metrics.lf1 import (CorpusScore, SampleScore, corpus_score, items_from_dict, items_from_document,
                               score_items, span_similarity, weighted_average)
from llmie.metrics.projection import (ProjectionSample, ProjectionScore, adversarial_rate, corpus_projection,
                                      score_projection)
from llmie.metrics.seqlabel import seqeval_scores, token_accuracy, token_weighted_f1

__all__ = ["CorpusScore", "ProjectionSample", "ProjectionScore", "SampleScore", "adversarial_rate",
           "corpus_projection", "corpus_score", "items_from_dict", "items_from_document", "score_items",
           "score_projection", "seqeval_scores", "span_similarity", "token_accuracy", "token_weighted_f1",
           "weighted_average"]
