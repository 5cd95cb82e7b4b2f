"""Evaluation: exact re-ID retrieval metrics (mAP, CMC, mINP) and classification top-k accuracy."""

from reidgraft.evaluation.retrieval import RetrievalResult, evaluate, topk_accuracy

__all__ = ["RetrievalResult", "evaluate", "topk_accuracy"]
