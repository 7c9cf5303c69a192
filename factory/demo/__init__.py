"""The embedded default's assets: the tiny model and tokenizer, the synthetic data, the real SmolLM2 import,
and the demo requests.

May import hub and base; never request (a sibling) nor anything above. The pipeline never imports it.
"""
