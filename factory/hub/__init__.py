"""The Hub: its protocol, the local hub (a folder), the huggingface_hub client, which hub a read or a publish
goes through, the operator's endpoints and tokens, GGUF import.

May import base only.
"""
