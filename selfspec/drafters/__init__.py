"""Drafters for the speculative loop: skipped sub-layers, prompt lookup (Kangaroo later)."""
