"""The plugin manager: discovery, registration, isolation of failures, the circuit breakers.

Plugins are found through the entry-point group ``assistant``; the bundled ones (chat,
translate, summarize, qa in ``assistant_plugins``) register through the same group. A plugin
that fails to import or register is recorded as ``failed`` and the rest load on; an event hook
that raises is reported and the other implementations still run. Each skill, and each plugin's
hooks, has its own :class:`~assistant.breaker.Breaker`: ``max_failures`` failures of its own code
in a row set it aside (``disabled``) until a cooldown passes, ``assistant plugins enable`` or a
restart; the caller's and the infrastructure's failures never count. Strict mode makes every
plugin failure a :class:`PluginError`.
"""

from __future__ import annotations

import inspect
import logging
import traceback
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any, Literal

import pluggy

from assistant import hookspecs
from assistant.breaker import Breaker, fault_of
from assistant.config import PluginsSettings, Settings
from assistant.errors import PluginError, RequestError, SkillUnavailable
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
    failures: int = 0  # of its hooks, in a row
    # Each skill's breaker (state, failures, last error and traceback, retry_in_s), and the
    # hooks' as "hooks": filled in by PluginHost.info().
    health: dict[str, dict[str, Any]] = field(default_factory=dict)

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
        self.breakers: dict[str, Breaker] = {}  # per skill
        self.hook_breakers: dict[str, Breaker] = {}  # per plugin
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

    def breaker(self, skill: str) -> Breaker:
        """The circuit breaker of ``skill``."""
        if skill not in self.breakers:
            self.breakers[skill] = Breaker(skill, self.settings.max_failures,
                                           self.settings.cooldown)
        return self.breakers[skill]

    def hook_breaker(self, plugin: str) -> Breaker:
        """The circuit breaker of ``plugin``'s event hooks (its skills have their own)."""
        if plugin not in self.hook_breakers:
            self.hook_breakers[plugin] = Breaker(f"{plugin} hooks", self.settings.max_failures,
                                                 self.settings.cooldown)
        return self.hook_breakers[plugin]

    def active(self, plugin: str) -> bool:
        """Whether ``plugin``'s event hooks are called: loaded, and its hooks not disabled."""
        info = self.plugins.get(plugin)
        if info is None:
            return True
        return info.status != "failed" and self.hook_breaker(plugin).allows()

    def record_success(self, plugin: str) -> None:
        """A hook of ``plugin`` ran without raising."""
        if plugin in self.plugins:
            self.hook_breaker(plugin).succeeded()
            self.plugins[plugin].failures = 0

    def record_failure(self, plugin: str, error: str, exc: BaseException | None = None) -> None:
        """Count a hook's failure; past ``max_failures`` in a row the plugin's hooks are
        disabled (its skills keep their own breakers)."""
        info = self.plugins.get(plugin)
        if info is None:
            return
        breaker = self.hook_breaker(plugin)
        if breaker.failed(error, _traceback(exc)):
            log.warning("the hooks of plugin %s are %s", plugin, breaker.why(),
                        extra={"plugin": plugin})
        info.failures, info.error = breaker.failures, error
        if self.settings.strict:
            raise PluginError(f"plugin '{plugin}' failed: {error}",
                              "Strict mode is on (ASSISTANT_PLUGINS_STRICT).")

    def enable(self, name: str) -> list[str]:
        """Re-arm the breakers of skill ``name``, or of every skill and the hooks of plugin
        ``name``; returns what was re-armed."""
        if name in self.skills:
            self.breaker(name).reset()
            return [name]
        info = self.plugins.get(name)
        if info is None:
            known = ", ".join(sorted({*self.plugins, *self.skills}))
            raise RequestError(f"no plugin or skill named {name!r}; known: {known}",
                               status=404, code="not_found", param="name")
        if info.status == "failed":
            raise RequestError(f"plugin {name!r} did not load ({info.error}); fix it and "
                               "restart the daemon", status=409, code="plugin_failed",
                               param="name")
        self.hook_breaker(name).reset()
        info.failures = 0
        for skill in info.skills:
            self.breaker(skill).reset()
        return [*info.skills, f"{name} hooks"]

    def problems(self) -> list[str]:
        """What is wrong with the plugins now, one line each (``/api/status`` problems)."""
        out = []
        for info in self.info():
            if info.status == "failed":
                out.append(f"plugin '{info.name}' failed to load: {info.error}")
                continue
            hooks = self.hook_breaker(info.name)
            if not hooks.allows():
                out.append(f"the hooks of plugin '{info.name}' are {hooks.why()}; "
                           f"`assistant plugins enable {info.name}` re-arms them")
            for skill in info.skills:
                breaker = self.breaker(skill)
                if not breaker.allows():
                    out.append(f"skill '{skill}' (plugin '{info.name}') is {breaker.why()}; "
                               f"`assistant plugins enable {skill}` re-arms it")
        return out

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
                else:
                    self.record_success(plugin)
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
                if not inspect.isawaitable(result):
                    self.record_success(impl.plugin_name)
                out.append(("", (impl.plugin_name, result)))
        return out

    def _hook_failed(self, plugin: str, hook: str, exc: Exception) -> str:
        message = f"plugin '{plugin}' failed in {hook}: {_describe(exc)}"
        log.error(message, exc_info=exc, extra={"plugin": plugin, "hook": hook})
        self.record_failure(plugin, message, exc)
        return message

    # -- skills --------------------------------------------------------------------------

    def available_skills(self) -> dict[str, Skill]:
        """Skills a turn may go to: their plugin loaded, their breaker not open."""
        return {n: s for n, s in self.skills.items() if self.breaker(n).allows()}

    def unavailable(self, skill: str) -> SkillUnavailable:
        """The error for a turn that must go to ``skill`` while its breaker is open."""
        breaker = self.breaker(skill)
        retry = breaker.retry_in()
        return SkillUnavailable(
            f"skill '{skill}' is {breaker.why()}",
            f"`assistant plugins enable {skill}` re-arms it; `assistant plugins list` shows "
            "the last error.", retry_after=max(1, round(retry or 60)))

    async def run_skill(self, name: str, turn: Turn, ctx: SkillContext) -> AsyncIterator[Event]:
        """Run a skill under the timeout; only its own failures count toward its breaker."""
        skill = self.skills.get(name)
        if skill is None or not self.breaker(name).allows():
            error = (self.unavailable(name) if skill is not None else
                     SkillUnavailable(f"skill '{name}' is not available; see "
                                      "`assistant plugins list`."))
            yield ErrorEvent(error.message, "skill_unavailable", error)
            yield Done("error")
            return
        plugin = self.skill_plugin[name]
        final = "complete"
        failed: ErrorEvent | None = None
        async for event in execute(skill, turn, ctx, self.settings.skill_timeout):
            if isinstance(event, ErrorEvent):
                failed = event
            if isinstance(event, Done):
                final = event.status
            yield event
        fault = "skill" if failed is None or failed.error is None else fault_of(failed.error)
        if final == "complete":
            self.breaker(name).succeeded()
        elif fault != "skill":  # the caller's or the infrastructure's: not the skill's
            assert failed is not None
            log.info("skill %s ended with the %s's error: %s", name, fault, failed.message,
                     extra={"skill": name, "plugin": plugin, "fault": fault})
        else:
            self._skill_failed(name, plugin, failed)

    def _skill_failed(self, name: str, plugin: str, failed: ErrorEvent | None) -> None:
        exc = failed.error if failed is not None else None
        message = failed.message if failed is not None else f"skill '{name}' timed out"
        log.error("skill %s of plugin %s failed: %s", name, plugin, message,
                  exc_info=exc, extra={"skill": name, "plugin": plugin})
        breaker = self.breaker(name)
        if breaker.failed(message, _traceback(exc)):
            log.warning("skill %s of plugin %s is %s", name, plugin, breaker.why(),
                        extra={"skill": name, "plugin": plugin})
        if self.settings.strict:
            raise PluginError(f"plugin '{plugin}' failed: {message}",
                              "Strict mode is on (ASSISTANT_PLUGINS_STRICT).")

    def info(self) -> list[PluginInfo]:
        """Every plugin, bundled first, with the health of its skills and hooks now."""
        for info in self.plugins.values():
            if info.status == "failed":
                continue
            hooks = self.hook_breaker(info.name)
            info.status = "loaded" if hooks.allows() else "disabled"
            info.health = {s: self.breaker(s).to_dict() for s in info.skills}
            if info.hooks:
                info.health["hooks"] = hooks.to_dict()
        return sorted(self.plugins.values(), key=lambda p: (not p.bundled, p.name))


def _traceback(exc: BaseException | None) -> str | None:
    if exc is None:
        return None
    return "".join(traceback.format_exception(exc)).rstrip()


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
