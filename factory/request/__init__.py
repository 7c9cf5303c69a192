"""The typed request (one pydantic model, Axolotl's key names), the Axolotl mapping, durations.

May import hub and base; never demo (a sibling) nor anything above.
"""
