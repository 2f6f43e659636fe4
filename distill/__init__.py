"""Distillation: the MIND trainer and its entry points."""
