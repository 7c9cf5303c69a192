"""The model factory: a finetune request in, a finetuned, evaluated, carded, published model out."""

__version__ = "0.1.0"
