"""Emotion planners: script + free-text description -> an EmotionPlan with one entry per spoken word."""

from models.plan.rules import RulePlanner

__all__ = ["RulePlanner"]
