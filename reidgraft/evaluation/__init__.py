"""Evaluation: exact re-ID retrieval metrics (mAP, CMC, mINP) with optional k-reciprocal
re-ranking, ranked-result pictures, and classification top-k accuracy."""

from reidgraft.evaluation.rerank import k_reciprocal_rerank
from reidgraft.evaluation.retrieval import (
    CollapsedEmbeddingWarning,
    GalleryScorer,
    RetrievalResult,
    evaluate,
    topk_accuracy,
)
from reidgraft.evaluation.visualize import ranked_results_grid

__all__ = [
    "CollapsedEmbeddingWarning",
    "GalleryScorer",
    "RetrievalResult",
    "evaluate",
    "k_reciprocal_rerank",
    "ranked_results_grid",
    "topk_accuracy",
]
