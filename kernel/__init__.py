"""The leaf kernel: errors, settings, job fields and limits, thread budgets, crash points.

Every layer (models, stores, tasks, flows and the shell) may import it; it imports none of them.
"""
