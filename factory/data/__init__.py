"""Data: datasets and their files, prompt formats, row chunks, encoding with label masks, the encoded
store (the tokenised cache), chat templates, bounded rendering of strangers' templates, decontamination.

May import request, hub and base; nothing above.
"""
