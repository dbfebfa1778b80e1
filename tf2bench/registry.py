"""A name -> object table that refuses duplicates and names the valid keys on a miss."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

from tf2bench.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Ordered registry; order is the order things were registered (used for reports)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._items) from None

    @contextmanager
    def using(self, name: str, item: T) -> Iterator[T]:
        """``item`` under ``name`` for the duration of a block; whatever was there before comes back after."""
        previous = self._items.get(name)
        self._items[name] = item
        try:
            yield item
        finally:
            if previous is None:
                self._items.pop(name, None)
            else:
                self._items[name] = previous

    def names(self) -> list[str]:
        return list(self._items)


def parse_names(kind: str, value: str | list[str] | tuple[str, ...], valid: list[str]) -> list[str]:
    """Parse a comma-separated selection ("all" = every valid name); unknown names raise."""
    items = value.split(",") if isinstance(value, str) else list(value)
    names = [s.strip() for s in items if s.strip()]
    if not names:
        raise UnknownNameError(kind, value, valid)
    if names == ["all"]:
        return list(valid)
    for name in names:
        if name not in valid:
            raise UnknownNameError(kind, name, valid)
    return list(dict.fromkeys(names))
