"""The operations of the synthetic world: exact integer semantics and plain-ASCII formatting."""

from __future__ import annotations

CHAIN_OPS: tuple[str, ...] = ("add", "sub", "mul", "div")
ALL_OPS: tuple[str, ...] = (*CHAIN_OPS, "max", "min")
SYMBOL: dict[str, str] = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


def apply_op(op: str, left: int, right: int) -> int:
    """Result of ``left op right``; division must be exact (``ValueError`` otherwise)."""
    if op == "add":
        return left + right
    if op == "sub":
        return left - right
    if op == "mul":
        return left * right
    if op == "div":
        if right == 0 or left % right:
            raise ValueError(f"{left} / {right} is not an exact division")
        return left // right
    if op == "max":
        return max(left, right)
    if op == "min":
        return min(left, right)
    raise ValueError(f"unknown op {op!r}")


def format_expr(op: str, left: object, right: object) -> str:
    """``12 + 5`` or ``max(12, 5)``."""
    sym = SYMBOL.get(op)
    return f"{left} {sym} {right}" if sym else f"{op}({left}, {right})"


def format_step(op: str, left: int, right: int, result: int) -> str:
    """``12 + 5 = 17`` or ``max(12, 5) = 12``."""
    return f"{format_expr(op, left, right)} = {result}"
