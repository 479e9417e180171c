"""Render engines: portrait + speech + emotion curve -> video frames."""

from models.render.preview import PreviewRenderer

__all__ = ["PreviewRenderer"]
