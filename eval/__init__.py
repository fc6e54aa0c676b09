"""Evaluation of the knowledge base: eval sets, metrics, and `python -m eval` (see README.md)."""
