"""Evaluation: retrieval and matching metrics of the paper, and checkpoint evaluation reports."""
