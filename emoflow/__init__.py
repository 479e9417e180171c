"""emoflow: script + emotion description + portrait -> emotional talking-face video."""

__version__ = "0.1.0"
