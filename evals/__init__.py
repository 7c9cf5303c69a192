"""Judging a model and its data: lm-eval task subsets (and, later, contamination checks).

Never imports `factory`: functions take a model, a tokenizer, texts and paths.
"""
