"""The plugin manager: discovery, registration, isolation of failures, the circuit breakers.

Plugins are found through the entry-point group ``assistant``; the bundled ones (chat,
translate, summarize, qa in ``assistant_plugins``) register through the same group. A plugin
that fails to import or register is recorded as ``failed`` and the rest load on, as is a name
two distributions declare (neither loads: which one would is an accident of ``sys.path``); an
event hook that raises is reported and the other implementations still run. Each skill, and
each hook of each plugin, has its own :class:`~assistant.breaker.Breaker`: ``max_failures``
failures of its own code in a row set it aside (``disabled``) until a cooldown passes,
``assistant plugins enable`` or a restart; the caller's and the infrastructure's failures never
count. A plugin's model backend has one more, which only reports (its errors are the
infrastructure's). Strict mode makes a plugin that fails to load, or a hook that raises, a
:class:`PluginError`; a skill's failure stays an ``error`` event of its turn.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import traceback
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any, Literal

import pluggy

from assistant import hookspecs
from assistant.breaker import Breaker, Ticket, fault_of
from assistant.config import PluginsSettings, Settings
from assistant.errors import HookTimeout, PluginError, RequestError, SkillUnavailable
from assistant.guards import Guard
from assistant.hook_threads import HookThreads
from assistant.models.backend import Backend
from assistant.skills import Done, ErrorEvent, Event, Skill, SkillContext, Turn, execute

log = logging.getLogger(__name__)

GROUP = "assistant"
BUNDLED_PACKAGE = "assistant_plugins"

PluginStatus = Literal["loaded", "failed", "disabled"]

# Hooks called once, at load: a failure there fails the plugin instead (no breaker).
_REGISTRATION_HOOKS = frozenset({"register_skills", "register_models", "register_guards"})
# Hooks run around a turn: each call under plugins.hook_timeout, a sync one on a thread.
_TURN_HOOKS = frozenset({"before_turn", "after_turn"})


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
    guards: list[str] = field(default_factory=list)
    failures: int = 0  # of its hooks, in a row
    # Each skill's breaker (state, failures, last error and traceback, retry_in_s), and the
    # hooks' as "hooks": filled in by PluginHost.info().
    health: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _by_name(eps: Collection[metadata.EntryPoint]) -> dict[str, list[metadata.EntryPoint]]:
    """The entry points in name order, those of one name from different distributions
    together (one distribution found twice on the path counts once)."""
    out: dict[str, list[metadata.EntryPoint]] = {}
    for ep in sorted(eps, key=lambda e: e.name):
        same = out.setdefault(ep.name, [])
        if all(_dist_name(ep) != _dist_name(other) for other in same):
            same.append(ep)
    return out


def _dist_name(ep: metadata.EntryPoint) -> str:
    return ep.dist.name.lower().replace("_", "-") if ep.dist is not None else ep.value


def _distribution(ep: metadata.EntryPoint) -> str:
    """The distribution that declares ``ep``, with its version: ``assistant-units 0.1``."""
    dist = ep.dist
    if dist is None:
        return f"(no distribution: {ep.value})"
    return f"{dist.metadata['Name']} {dist.version}"


def _duplicate(name: str, eps: list[metadata.EntryPoint]) -> str:
    dists = " and ".join(sorted(_distribution(ep) for ep in eps))
    return (f"two distributions declare the plugin '{name}' ({dists}): neither is loaded; "
            f"uninstall one (`pip uninstall`) or rename its entry point")


class PluginHost:
    """One pluggy manager plus what the plugins registered and how each is doing."""

    def __init__(self, settings: PluginsSettings | None = None) -> None:
        self.settings = settings or PluginsSettings.model_validate({})
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.skills: dict[str, Skill] = {}
        self.skill_plugin: dict[str, str] = {}
        self.backends: list[Backend] = []
        self.backend_plugin: dict[int, str] = {}  # id of a backend -> its plugin
        self.guards: dict[str, Guard] = {}  # in registration order
        self.guard_plugin: dict[str, str] = {}
        self.plugins: dict[str, PluginInfo] = {}
        self.breakers: dict[str, Breaker] = {}  # per skill
        self.hook_breakers: dict[tuple[str, str], Breaker] = {}  # per (plugin, hook)
        self.backend_breakers: dict[str, Breaker] = {}  # per plugin: reports, never gates
        self.entry_points_loaded = False
        self.threads = HookThreads()  # where sync hooks run

    # -- loading -------------------------------------------------------------------------

    def load_entry_points(self, skip: Collection[str] = ()) -> None:
        """Import and register each ``assistant`` entry point ``enabled`` allows, but those
        named in ``skip`` (registered otherwise, as a test does). Idempotent."""
        if self.entry_points_loaded:
            return
        self.entry_points_loaded = True
        wanted = set(self.settings.enabled)
        found = set()
        for name, eps in _by_name(metadata.entry_points(group=GROUP)).items():
            found.add(name)
            if (wanted and name not in wanted) or name in self.plugins or name in skip:
                continue
            if len(eps) > 1:
                # Which one would load depends on the order of sys.path: neither does.
                self._fail(PluginInfo(name), _duplicate(name, eps))
                continue
            (ep,) = eps
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
            self.backend_plugin[id(backend)] = info.name
            info.models.extend(m.name for m in backend.models())

        def add_guard(guard: Guard) -> None:
            if not isinstance(guard, Guard):
                raise PluginError(f"register() expects a Guard, got {type(guard).__name__}")
            if guard.name in self.guards:
                raise PluginError(f"guard '{guard.name}' is already registered by plugin "
                                  f"'{self.guard_plugin[guard.name]}'")
            self.guards[guard.name] = guard
            self.guard_plugin[guard.name] = info.name
            info.guards.append(guard.name)

        registrations: tuple[tuple[str, Callable[[Any], None]], ...] = (
            ("register_skills", add_skill), ("register_models", add_backend),
            ("register_guards", add_guard))
        for hook, register in registrations:
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
        for guard in info.guards:
            self.guards.pop(guard, None)
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

    def hook_breaker(self, plugin: str, hook: str) -> Breaker:
        """The circuit breaker of ``plugin``'s implementation of event hook ``hook`` (its other
        hooks and its skills have their own)."""
        key = (plugin, hook)
        if key not in self.hook_breakers:
            self.hook_breakers[key] = Breaker(f"{plugin} {hook}", self.settings.max_failures,
                                              self.settings.cooldown)
        return self.hook_breakers[key]

    def _hook_breakers(self, plugin: str) -> list[Breaker]:
        return [self.hook_breaker(plugin, h) for h in self._event_hooks(plugin)]

    def _event_hooks(self, plugin: str) -> list[str]:
        """The plugin's hooks that run while the daemon does: event hooks and its guards
        (``guard NAME``), each with a breaker of its own."""
        info = self.plugins.get(plugin)
        if info is None:
            return []
        return [*(h for h in info.hooks if h not in _REGISTRATION_HOOKS),
                *(f"guard {g}" for g in info.guards)]

    def active(self, plugin: str, hook: str) -> bool:
        """Whether ``plugin``'s ``hook`` is called: loaded, and that hook not disabled."""
        info = self.plugins.get(plugin)
        if info is None:
            return True
        return info.status != "failed" and self.hook_breaker(plugin, hook).allows()

    def record_success(self, plugin: str, hook: str) -> None:
        """``plugin``'s ``hook`` ran without raising: that hook's count starts again."""
        if plugin in self.plugins:
            self.hook_breaker(plugin, hook).succeeded()
            self.plugins[plugin].failures = max(
                (b.failures for b in self._hook_breakers(plugin)), default=0)

    def record_failure(self, plugin: str, hook: str, error: str,
                       exc: BaseException | None = None) -> None:
        """Count a hook's failure; past ``max_failures`` in a row that hook of the plugin is
        disabled (its other hooks and its skills keep their own breakers)."""
        info = self.plugins.get(plugin)
        if info is None:
            return
        breaker = self.hook_breaker(plugin, hook)
        if breaker.failed(error, _traceback(exc)):
            log.warning("hook %s of plugin %s is %s", hook, plugin, breaker.why(),
                        extra={"plugin": plugin, "hook": hook})
        info.failures, info.error = breaker.failures, error
        if self.settings.strict:
            raise PluginError(f"plugin '{plugin}' failed: {error}",
                              "Strict mode is on (ASSISTANT_PLUGINS_STRICT).")

    def backend_result(self, plugin: str, exc: BaseException | None) -> None:
        """A model backend of ``plugin`` answered (``exc`` None) or raised ``exc``: shown in
        ``/api/plugins`` and the problems, never a reason to set a skill aside."""
        if plugin not in self.plugins:
            return
        breaker = self.backend_breakers.setdefault(
            plugin, Breaker(f"{plugin} models", self.settings.max_failures,
                            self.settings.cooldown))
        if exc is None:
            breaker.succeeded()
        else:
            breaker.failed(_describe(exc), _traceback(exc))

    def enable(self, name: str) -> list[str]:
        """Re-arm plugin ``name`` (every skill and hook of it), and skill ``name``; returns
        what was re-armed."""
        info = self.plugins.get(name)
        if info is None and name not in self.skills:
            known = ", ".join(sorted({*self.plugins, *self.skills}))
            raise RequestError(f"no plugin or skill named {name!r}; known: {known}",
                               status=404, code="not_found", param="name")
        if info is not None and info.status == "failed" and name not in self.skills:
            raise RequestError(f"plugin {name!r} did not load ({info.error}); fix it and "
                               "restart the daemon", status=409, code="plugin_failed",
                               param="name")
        skills = [name] if name in self.skills else []
        hooks: list[str] = []
        if info is not None and info.status != "failed":
            info.failures = 0
            skills += [s for s in info.skills if s != name]
            for breaker in self._hook_breakers(name):
                breaker.reset()
            if self._hook_breakers(name):
                hooks = [f"{name} hooks"]
            if name in self.backend_breakers:
                self.backend_breakers[name].reset()
        for skill in skills:
            self.breaker(skill).reset()
        return [*skills, *hooks]

    def owner(self, module: str) -> PluginInfo | None:
        """The plugin whose code module ``module`` is: a registered plugin module or a module
        under it, or the module a plugin's object or one of its skills is defined in."""
        roots: dict[str, str] = {}
        for name, plugin in self.pm.list_name_plugin():
            if plugin is not None and name in self.plugins:
                roots[getattr(plugin, "__name__", None) or type(plugin).__module__] = name
        for skill_name, skill in self.skills.items():
            roots.setdefault(type(skill).__module__, self.skill_plugin[skill_name])
        for root, name in roots.items():
            if module == root or module.startswith(root + "."):
                return self.plugins[name]
        return None

    def problems(self) -> list[str]:
        """What is wrong with the plugins now, one line each (``/api/status`` problems)."""
        out = []
        for info in self.info():
            if info.status == "failed":
                out.append(f"plugin '{info.name}' failed to load: {info.error}")
                continue
            for hook in self._event_hooks(info.name):
                breaker = self.hook_breaker(info.name, hook)
                if not breaker.allows():
                    out.append(f"hook {hook} of plugin '{info.name}' is {breaker.why()}; "
                               f"`assistant plugins enable {info.name}` re-arms it")
            models = self.backend_breakers.get(info.name)
            if models is not None and models.failures >= models.max_failures:
                out.append(f"the model backend of plugin '{info.name}' failed "
                           f"{models.failures} times in a row (last: {models.last_error})")
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
        """Like :meth:`call`, awaiting implementations that return an awaitable. The hooks
        around a turn (``before_turn``, ``after_turn``) run each call under
        ``hook_timeout``, a sync implementation on a thread of its own (:meth:`timed`)."""
        if hook in _TURN_HOOKS:
            notices = []
            for impl in self._impls(hook):
                if self.active(impl.plugin_name, hook):
                    _, notice = await self.timed(
                        impl.plugin_name, hook, impl.function,
                        **{a: kwargs[a] for a in impl.argnames})
                    if notice:
                        notices.append(notice)
            return notices
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
                    self.record_success(plugin, hook)
        return notices

    async def timed(self, plugin: str, hook: str, function: Callable[..., Any],
                    **kwargs: Any) -> tuple[Any, str | None]:
        """``function(**kwargs)`` as ``plugin``'s ``hook`` (an event hook, or ``guard NAME``)
        under ``hook_timeout``: its result and None, or None and the notice saying that it
        raised or ran late (counted against that hook's breaker).

        A sync function runs on a hook thread (:mod:`assistant.hook_threads`): one that never
        returns cannot stall the event loop, nor hold a thread others wait for, nor the exit;
        it is left behind. An awaitable it returns is awaited in the time left."""
        timeout = self.settings.hook_timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            if inspect.iscoroutinefunction(function):
                result = await asyncio.wait_for(function(**kwargs), timeout)
            else:
                result = await asyncio.wait_for(self.threads.call(function, kwargs, hook), timeout)
                if inspect.isawaitable(result):
                    result = await asyncio.wait_for(result, max(deadline - loop.time(), 0))
        except TimeoutError:
            late = HookTimeout(f"took longer than {timeout:g} s (plugins.hook_timeout) and "
                               "was left behind")
            return None, self._hook_failed(plugin, hook, late, trace=False)
        except Exception as exc:
            return None, self._hook_failed(plugin, hook, exc)
        self.record_success(plugin, hook)
        return result, None

    def _call(self, hook: str, kwargs: dict[str, Any]) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        for impl in self._impls(hook):
            if not self.active(impl.plugin_name, hook):
                continue
            try:
                result = impl.function(**{a: kwargs[a] for a in impl.argnames})
            except Exception as exc:
                out.append((self._hook_failed(impl.plugin_name, hook, exc), None))
            else:
                if not inspect.isawaitable(result):
                    self.record_success(impl.plugin_name, hook)
                out.append(("", (impl.plugin_name, result)))
        return out

    def misbehaved(self, plugin: str, hook: str, why: str) -> str:
        """Count an answer of ``plugin``'s ``hook`` that cannot be used as its failure; the
        notice saying so."""
        return self._hook_failed(plugin, hook, PluginError(why), trace=False)

    def configure_guards(self, sections: dict[str, dict[str, Any]]) -> None:
        """Hand each guard its ``[guards.<name>]`` section, once; a guard that refuses it
        fails its plugin (reported, and fatal in strict mode)."""
        for name, guard in list(self.guards.items()):
            try:
                guard.configure(dict(sections.get(name, {})))
            except Exception as exc:
                self._fail(self.plugins[self.guard_plugin[name]],
                           f"guard '{name}' refused its settings [guards.{name}]: "
                           f"{_describe(exc)}")

    def _hook_failed(self, plugin: str, hook: str, exc: Exception, trace: bool = True) -> str:
        message = f"plugin '{plugin}' failed in {hook}: {_describe(exc)}"
        log.error(message, exc_info=exc if trace else None,
                  extra={"plugin": plugin, "hook": hook})
        self.record_failure(plugin, hook, message, exc)
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
            "the last error.", retry_after=None if retry is None else max(1, round(retry)))

    def admit(self, skill: str, force: bool = False) -> Ticket | None:
        """A ticket for one turn of ``skill`` (see :meth:`Breaker.admit`), or None when its
        breaker sets the turn aside."""
        return self.breaker(skill).admit(force)

    async def run_skill(self, name: str, turn: Turn, ctx: SkillContext,
                        ticket: Ticket | None = None) -> AsyncIterator[Event]:
        """Run a skill under the timeout; only its own failures count toward its breaker.

        ``ticket`` is the turn's admission (:meth:`admit`); without one the turn is admitted
        here. Whatever ends the run, the ticket is settled: a trial that is cancelled or ends
        with the caller's or the infrastructure's error leaves its place to the next turn.
        """
        skill = self.skills.get(name)
        breaker = self.breaker(name)
        if ticket is None and skill is not None:
            ticket = breaker.admit()
        if skill is None or ticket is None:
            error = (self.unavailable(name) if skill is not None else
                     SkillUnavailable(f"skill '{name}' is not available; see "
                                      "`assistant plugins list`."))
            yield ErrorEvent(error.message, "skill_unavailable", error)
            yield Done("error")
            return
        plugin = self.skill_plugin[name]
        final, timeout = "complete", None
        failed: ErrorEvent | None = None
        try:
            async for event in execute(skill, turn, ctx, self.settings.skill_timeout):
                if isinstance(event, ErrorEvent):
                    failed = event
                if isinstance(event, Done):
                    final, timeout = event.status, event.timeout
                yield event
            fault = ("infrastructure" if timeout == "model" else "skill"
                     if failed is None or failed.error is None else fault_of(failed.error))
            if final == "complete":
                breaker.succeeded(ticket)
            elif fault != "skill":  # the caller's or the infrastructure's: not the skill's
                why = failed.message if failed is not None else "cut by the timeout while " \
                    "waiting for the model"
                log.info("skill %s ended with the %s's error: %s", name, fault, why,
                         extra={"skill": name, "plugin": plugin, "fault": fault})
            else:
                self._skill_failed(name, plugin, failed, ticket)
        finally:
            breaker.release(ticket)  # unless settled above: the turn went away

    def _skill_failed(self, name: str, plugin: str, failed: ErrorEvent | None,
                      ticket: Ticket | None) -> None:
        # Also in strict mode only logged: the turn's error event has said it already, and a
        # raise here would cut the stream after the route event with no error event.
        exc = failed.error if failed is not None else None
        message = failed.message if failed is not None else f"skill '{name}' timed out"
        log.error("skill %s of plugin %s failed: %s", name, plugin, message,
                  exc_info=exc, extra={"skill": name, "plugin": plugin})
        breaker = self.breaker(name)
        if breaker.failed(message, _traceback(exc), ticket):
            log.warning("skill %s of plugin %s is %s", name, plugin, breaker.why(),
                        extra={"skill": name, "plugin": plugin})

    def info(self) -> list[PluginInfo]:
        """Every plugin, bundled first, with the health of its skills and hooks now."""
        for info in self.plugins.values():
            if info.status == "failed":
                continue
            hooks = self._hook_breakers(info.name)
            info.status = "loaded" if all(h.allows() for h in hooks) else "disabled"
            info.health = {s: self.breaker(s).to_dict() for s in info.skills}
            if hooks:  # the hook worst off stands for them all; "hook" names it
                worst = max(hooks, key=lambda h: (not h.allows(), h.failures))
                info.health["hooks"] = {**worst.to_dict(),
                                        "hook": worst.name.split(" ", 1)[1]}
            models = self.backend_breakers.get(info.name)
            if models is not None:
                info.health["models"] = models.to_dict()
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
