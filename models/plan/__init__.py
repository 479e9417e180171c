"""Emotion planners: script + free-text description -> an EmotionPlan with one entry per spoken word
(`rules.RulePlanner`, `llm.LLMPlanner`); `tags` reads inline tags and checks a script at submission."""
