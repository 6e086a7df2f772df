"""What pydantic refused, as ``path: reason`` lines: for settings, bot options and API bodies."""

from __future__ import annotations

from pydantic import ValidationError

__all__ = ["problems"]


def problems(exc: ValidationError, whole: str = "(root)") -> list[str]:
    """One ``path: reason`` per error; ``whole`` names the value itself (an empty path)."""
    return [
        f"{'.'.join(str(part) for part in error['loc']) or whole}: {error['msg']}"
        for error in exc.errors()
    ]
