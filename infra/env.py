"""Typed reads of environment variables; a bad value raises `ConfigError` naming it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class ConfigError(ValueError):
    """An environment variable has a value the service cannot use."""


class Env:
    """A view of an environment mapping (default: the process's) with typed getters.

    An unset or empty variable yields the default; every error names the variable.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def text(self, name: str, default: str) -> str:
        return self._env.get(name, "").strip() or default

    def optional(self, name: str) -> str | None:
        return self._env.get(name, "").strip() or None

    def number(
        self, name: str, default: float, minimum: float = 0.0, *, positive: bool = False
    ) -> float:
        """A float at least `minimum` (strictly above 0 when `positive`)."""
        raw = self._env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None
        if positive and value <= 0:
            raise ConfigError(f"{name} must be positive, got {value}")
        if value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {value}")
        return value

    def integer(self, name: str, default: int, minimum: int = 0) -> int:
        value = self.number(name, default, minimum)
        if value != int(value):
            raise ConfigError(f"{name} must be a whole number, got {value}")
        return int(value)

    def flag(self, name: str, default: bool) -> bool:
        raw = self._env.get(name, "").strip().lower()
        if not raw:
            return default
        if raw in {"1", "true", "yes", "on"}:
            return True
        if raw in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}")

    def choice(self, name: str, default: str, choices: Sequence[str]) -> str:
        value = self.text(name, default).lower()
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value

    def items(self, name: str) -> tuple[str, ...]:
        """A comma-separated list, blanks dropped."""
        return tuple(item.strip() for item in self._env.get(name, "").split(",") if item.strip())


#: Values of LOG_FORMAT.
LOG_FORMATS = ("auto", "json", "console")
