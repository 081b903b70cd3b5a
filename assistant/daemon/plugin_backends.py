"""Models that plugins serve with backends of their own: which backend and plugin serve each,
and what becomes of a backend's failure. A backend's own error (a remote engine down, a bug)
is the infrastructure's 503 (:class:`~assistant.errors.BackendFailed`), not the fault of the
skill that asked; each failure and success is told to the plugin host's breaker."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from assistant.errors import AssistantError, BackendFailed
from assistant.models.backend import Backend, Delta, ModelInfo, closing_stream

log = logging.getLogger("assistant.models")


class PluginBackends:
    def __init__(self) -> None:
        self._by_model: dict[str, Backend] = {}
        self._plugin: dict[str, str] = {}  # model name -> the plugin of its backend
        # Told of each backend's failure (plugin, error) or success (plugin, None): the
        # plugin host's breaker of that plugin's models (set by the composition root).
        self.on_result: Callable[[str, BaseException | None], None] | None = None

    def add(self, backend: Backend, plugin: str | None = None) -> None:
        for info in backend.models():
            self._by_model[info.name] = backend
            if plugin is not None:
                self._plugin[info.name] = plugin

    def __contains__(self, model: object) -> bool:
        return model in self._by_model

    def __getitem__(self, model: str) -> Backend:
        return self._by_model[model]

    def get(self, model: str) -> Backend | None:
        return self._by_model.get(model)

    def models(self) -> list[ModelInfo]:
        """Every model served, as the backend serving it says."""
        return [i for name, backend in self._by_model.items()
                for i in backend.models() if i.name == name]

    def failed(self, model: str, exc: Exception) -> BackendFailed:
        """The error ``model``'s backend raised, as the infrastructure's (503)."""
        plugin = self._plugin.get(model)
        log.error("the backend of model %s (plugin %s) failed", model, plugin or "?",
                  exc_info=exc, extra={"model": model, "plugin": plugin})
        if plugin is not None and self.on_result is not None:
            self.on_result(plugin, exc)
        return BackendFailed(
            f"model {model!r} failed in its backend (plugin {plugin or '?'}): "
            f"{type(exc).__name__}: {exc}",
            "Try again shortly; `assistant plugins list` shows the backend's last error.",
            plugin=plugin)

    def worked(self, model: str) -> None:
        plugin = self._plugin.get(model)
        if plugin is not None and self.on_result is not None:
            self.on_result(plugin, None)

    async def stream(self, model: str, deltas: AsyncIterator[Delta]) -> AsyncIterator[Delta]:
        """``deltas`` of ``model``'s backend, its failure raised as :meth:`failed` says."""
        try:
            async with closing_stream(deltas) as stream:
                async for delta in stream:
                    yield delta
        except AssistantError:
            raise
        except Exception as exc:
            raise self.failed(model, exc) from exc
        self.worked(model)
