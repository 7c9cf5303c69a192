"""What is published beside the weights: the model card and the loss curve.

May import data and every floor below it; never train or demo (siblings), nor anything above.
"""
