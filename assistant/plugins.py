"""The plugin manager: discovery, registration, isolation of failures, the circuit breaker.

Plugins are found through the entry-point group ``assistant``; the bundled ones (chat,
translate, summarize, qa in ``assistant_plugins``) register through the same group. A plugin
that fails to import or register is recorded as ``failed`` and the rest load on; an event hook
that raises is reported and the other implementations still run; a plugin that fails
``max_failures`` times in a row is ``disabled`` until restart. Strict mode makes every one of
these a :class:`PluginError`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any, Literal

import pluggy

from assistant import hookspecs
from assistant.config import PluginsSettings, Settings
from assistant.errors import PluginError
from assistant.models.backend import Backend
from assistant.skills import Done, ErrorEvent, Event, Skill, SkillContext, Turn, execute

log = logging.getLogger(__name__)

GROUP = "assistant"
BUNDLED_PACKAGE = "assistant_plugins"

PluginStatus = Literal["loaded", "failed", "disabled"]


@dataclass
class PluginInfo:
    """One plugin as ``assistant plugins list`` and the API show it."""

    name: str
    version: str = ""
    bundled: bool = False
    status: PluginStatus = "loaded"
    error: str | None = None
    hooks: list[str] = field(default_factory=list)
    skills: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    failures: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class PluginHost:
    """One pluggy manager plus what the plugins registered and how each is doing."""

    def __init__(self, settings: PluginsSettings | None = None) -> None:
        self.settings = settings or PluginsSettings.model_validate({})
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.skills: dict[str, Skill] = {}
        self.skill_plugin: dict[str, str] = {}
        self.backends: list[Backend] = []
        self.plugins: dict[str, PluginInfo] = {}
        self.entry_points_loaded = False

    # -- loading -------------------------------------------------------------------------

    def load_entry_points(self) -> None:
        """Import and register each ``assistant`` entry point ``enabled`` allows. Idempotent."""
        if self.entry_points_loaded:
            return
        self.entry_points_loaded = True
        wanted = set(self.settings.enabled)
        found = set()
        for ep in sorted(metadata.entry_points(group=GROUP), key=lambda e: e.name):
            if (wanted and ep.name not in wanted) or ep.name in self.plugins:
                continue
            found.add(ep.name)
            dist = ep.dist
            info = PluginInfo(
                name=ep.name,
                version=dist.version if dist is not None else "",
                bundled=ep.value.split(":")[0].startswith(BUNDLED_PACKAGE + "."),
            )
            try:
                plugin = ep.load()
            except Exception as exc:
                self._fail(info, f"cannot import {ep.value}: {_describe(exc)}")
                continue
            self.register(plugin, ep.name, version=info.version, bundled=info.bundled)
        for name in sorted(wanted - found - set(self.plugins)):
            self._fail(PluginInfo(name), f"no plugin named '{name}' is installed "
                       "(ASSISTANT_PLUGINS / plugins.enabled names it)")

    def register(
        self, plugin: object, name: str | None = None, *, version: str = "",
        bundled: bool = False,
    ) -> PluginInfo:
        """Register a module or object of ``@hookimpl`` functions (tests use this directly)."""
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        info = PluginInfo(name, version=version, bundled=bundled)
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:
            return self._fail(info, f"invalid plugin: {_describe(exc)}")
        self.plugins[name] = info
        info.hooks = sorted(c.name for c in self.pm.get_hookcallers(plugin) or [])
        self._run_registration(info)
        return info

    def _run_registration(self, info: PluginInfo) -> None:
        def add_skill(skill: Skill) -> None:
            if not isinstance(skill, Skill):
                raise PluginError(f"register() expects a Skill, got {type(skill).__name__}")
            if skill.name in self.skills:
                raise PluginError(f"skill '{skill.name}' is already registered by plugin "
                                  f"'{self.skill_plugin[skill.name]}'")
            self.skills[skill.name] = skill
            self.skill_plugin[skill.name] = info.name
            info.skills.append(skill.name)

        def add_backend(backend: Backend) -> None:
            if not isinstance(backend, Backend):
                raise PluginError(f"register() expects a Backend, got {type(backend).__name__}")
            self.backends.append(backend)
            info.models.extend(m.name for m in backend.models())

        for hook, register in (("register_skills", add_skill), ("register_models", add_backend)):
            for impl in self._impls(hook, info.name):
                try:
                    impl.function(register)
                except Exception as exc:
                    self._fail(info, f"{hook} raised {_describe(exc)}")
                    return

    def register_commands(self, cli: Any) -> None:
        """Let plugins add click commands; a failing plugin is reported, the CLI still works."""
        self.call("register_commands", cli=cli)

    def _fail(self, info: PluginInfo, error: str) -> PluginInfo:
        info.status, info.error = "failed", error
        self.plugins[info.name] = info
        for skill in info.skills:
            self.skills.pop(skill, None)
        log.warning("plugin %s failed: %s", info.name, error)
        if self.settings.strict:
            raise PluginError(f"plugin '{info.name}' failed: {error}",
                              "Strict mode is on (ASSISTANT_PLUGINS_STRICT).")
        return info

    # -- health --------------------------------------------------------------------------

    def active(self, plugin: str) -> bool:
        info = self.plugins.get(plugin)
        return info is None or info.status == "loaded"

    def record_success(self, plugin: str) -> None:
        if plugin in self.plugins:
            self.plugins[plugin].failures = 0

    def record_failure(self, plugin: str, error: str) -> None:
        """Count a runtime failure; past ``max_failures`` in a row the plugin is disabled."""
        info = self.plugins.get(plugin)
        if info is None:
            return
        info.failures += 1
        info.error = error
        if info.failures >= self.settings.max_failures and info.status == "loaded":
            info.status = "disabled"
            log.warning("plugin %s disabled after %d failures in a row", plugin, info.failures)
        if self.settings.strict:
            raise PluginError(f"plugin '{plugin}' failed: {error}",
                              "Strict mode is on (ASSISTANT_PLUGINS_STRICT).")

    # -- calling -------------------------------------------------------------------------

    def _impls(self, hook: str, plugin: str | None = None) -> list[pluggy.HookImpl]:
        impls = getattr(self.pm.hook, hook).get_hookimpls()
        # Registration order: bundled plugins, then third-party ones, each in name order.
        return [i for i in impls if plugin is None or i.plugin_name == plugin]

    def call(self, hook: str, **kwargs: Any) -> list[str]:
        """Call each active implementation of an event hook on its own.

        Returns a message per implementation that raised; the others still ran.
        """
        return [n for n, _ in self._call(hook, kwargs) if n]

    async def acall(self, hook: str, **kwargs: Any) -> list[str]:
        """Like :meth:`call`, awaiting implementations that return an awaitable."""
        notices = []
        for notice, result in self._call(hook, kwargs):
            if notice:
                notices.append(notice)
            elif inspect.isawaitable(result[1]):
                plugin = result[0]
                try:
                    await result[1]
                except Exception as exc:
                    notices.append(self._hook_failed(plugin, hook, exc))
        return notices

    def _call(self, hook: str, kwargs: dict[str, Any]) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        for impl in self._impls(hook):
            if not self.active(impl.plugin_name):
                continue
            try:
                result = impl.function(**{a: kwargs[a] for a in impl.argnames})
            except Exception as exc:
                out.append((self._hook_failed(impl.plugin_name, hook, exc), None))
            else:
                out.append(("", (impl.plugin_name, result)))
        return out

    def _hook_failed(self, plugin: str, hook: str, exc: Exception) -> str:
        message = f"plugin '{plugin}' failed in {hook}: {_describe(exc)}"
        log.warning(message)
        self.record_failure(plugin, message)
        return message

    # -- skills --------------------------------------------------------------------------

    def available_skills(self) -> dict[str, Skill]:
        """Skills of plugins that are neither failed nor disabled."""
        return {n: s for n, s in self.skills.items() if self.active(self.skill_plugin[n])}

    async def run_skill(self, name: str, turn: Turn, ctx: SkillContext) -> AsyncIterator[Event]:
        """Run a skill under the timeout, counting its failures toward the circuit breaker."""
        skill = self.available_skills().get(name)
        if skill is None:
            yield ErrorEvent(f"skill '{name}' is not available; see `assistant plugins list`.")
            yield Done("error")
            return
        plugin = self.skill_plugin[name]
        final = "complete"
        error = ""
        async for event in execute(skill, turn, ctx, self.settings.skill_timeout):
            if isinstance(event, ErrorEvent):
                error = event.message
            if isinstance(event, Done):
                final = event.status
            yield event
        if final == "complete":
            self.record_success(plugin)
        else:
            self.record_failure(plugin, error or f"skill '{name}' timed out")

    def info(self) -> list[PluginInfo]:
        return sorted(self.plugins.values(), key=lambda p: (not p.bundled, p.name))


_host: PluginHost | None = None


def load_plugins(settings: Settings) -> PluginHost:
    """The process's plugin host, loading entry points on first call. Idempotent."""
    global _host
    if _host is None:
        host = PluginHost(settings.plugins)
        host.load_entry_points()
        _host = host
    return _host


def reset_plugins() -> None:
    """Forget the process's plugin host (tests; a daemon restart)."""
    global _host
    _host = None
