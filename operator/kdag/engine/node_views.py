"""The `nodes` that templates and `when` conditions see, built lazily and cached."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any


class NodeViews(Mapping[str, Mapping[str, Any]]):
    """The `nodes` a template or condition sees, each computed on first use: starting one
    node of a 500-node chain reads the views of its few upstream nodes, not all 500."""

    def __init__(
        self,
        view_of: Callable[[str, list[str]], dict[str, Any] | None],
        keys_by_template: dict[str, list[str]],
    ) -> None:
        self._view_of = view_of
        self._keys = keys_by_template
        self._views: dict[str, dict[str, Any] | None] = {}

    def _view(self, name: str) -> dict[str, Any] | None:
        if name not in self._views:
            self._views[name] = self._view_of(name, self._keys.get(name, []))
        return self._views[name]

    def __getitem__(self, name: str) -> Mapping[str, Any]:
        view = self._view(name)
        if view is None:
            raise KeyError(name)
        return view

    def __iter__(self) -> Iterator[str]:
        return (name for name in self._keys if self._view(name) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)
