"""The ground floor: errors, atomic writes, the factory's home, paths kept inside their root, hashes, ids,
text files, progress events, redaction, the secrets file, sealed tokens, interrupts, bounded patterns.

Imports nothing else of factory.
"""
