"""Drafters for the speculative loop: skipped sub-layers, Kangaroo, prompt lookup."""
