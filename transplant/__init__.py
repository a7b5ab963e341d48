"""Tokenizer transplantation: give a pretrained LM a donor's vocabulary."""

__version__ = "0.1.0"
