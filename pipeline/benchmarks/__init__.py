"""Benchmarks shipped with hilnas: each prints its figures and saves them (JSON + markdown)."""
