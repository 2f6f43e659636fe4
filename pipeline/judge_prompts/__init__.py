"""Built-in judge prompts (YAML package data); load them with ``pipeline.judge.load_judge_prompt``."""
