"""masklab: every kind of mask in modern deep learning."""

__version__ = "0.1.0"
