"""Training: the trainer (transformers' Trainer on packed rows), its options, the loss, packing, tokens,
and the merge of an adapter into its base.

May import data and every floor below it; never publish or demo (siblings), nor anything above.
"""
