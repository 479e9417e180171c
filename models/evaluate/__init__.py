"""Evaluation of engines against measurable goals (render: emotion agreement, lip sync, identity)."""

from models.evaluate.render import RenderEvalConfig, RenderEvalReport, evaluate_render

__all__ = ["RenderEvalConfig", "RenderEvalReport", "evaluate_render"]
