"""Evaluation: scoring benchmark pairs and computing metrics."""
