"""Evaluation: metrics (BLEU, chrF, ROUGE-L, EM/F1, citations, routing) and runners per task."""
