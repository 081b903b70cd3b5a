"""Where a turn goes: the client's skill, a command, the router, or the fallback when a
skill's breaker sets the turn aside.

:class:`RoutePolicy` is the turn service's first step after the user's side is stored: it
refuses a skill nobody registered (a 400 before anything is written), asks the router, and
admits the turn to its skill's circuit breaker (:mod:`assistant.breaker`), sending it to the
fallback skill, with a notice saying why, when that breaker is open.
"""

from __future__ import annotations

import asyncio
import difflib
from typing import TYPE_CHECKING

from assistant.errors import AssistantError, RequestError
from assistant.routing import RouteDecision, Router

if TYPE_CHECKING:
    from assistant.breaker import Ticket
    from assistant.daemon.turns import TurnRequest
    from assistant.plugins import PluginHost


class RoutePolicy:
    """The router and the plugins' breakers, asked in the order a turn needs them.

    Routing corrections belong to whoever made them: ``router`` holds the daemon's owner's,
    and each user (``assistant users add``) gets a router of the same skills holding theirs,
    kept beside the owner's file as ``routing-corrections.user-ID.json``."""

    def __init__(self, plugins: PluginHost, router: Router) -> None:
        self.plugins = plugins
        self.router = router
        self._users: dict[int, Router] = {}

    def router_of(self, owner: int) -> Router:
        """The router holding ``owner``'s corrections (0: the daemon's owner)."""
        if owner == 0:
            return self.router
        if owner not in self._users:
            path = self.router.corrections_path
            self._users[owner] = self.router.with_corrections(
                None if path is None else path.with_name(f"{path.stem}.user-{owner}.json"))
        return self._users[owner]

    def check_skill(self, skill: str, request: TurnRequest | None = None) -> None:
        """A 400 ``unknown_skill`` when the client's ``skill``, or a ``/name`` or ``@name``
        command at the start of the text, names no registered skill (one set aside by its
        breaker is known: the turn falls back with a notice)."""
        if skill in self.plugins.skills:
            return
        close = difflib.get_close_matches(skill, list(self.plugins.skills), n=1)
        known = ", ".join(sorted(self.plugins.skills))
        guess = f"did you mean {close[0]!r}? " if close else ""
        if request is None:
            raise RequestError(f"skill: no skill named {skill!r}; {guess}available: {known}",
                               param="skill", code="unknown_skill")
        sigil = request.text.lstrip()[:1]
        raise RequestError(
            f"{request.text_field}: no skill named {skill!r} (the message starts with "
            f"{sigil}{skill}); {guess}available: {known}. To send the words as they are, put "
            "something before it.", param=request.text_field, code="unknown_skill")

    def check_request(self, request: TurnRequest) -> None:
        """:meth:`check_skill` of the skill the request names, else of its ``/command`` or
        ``@command``."""
        if request.skill is not None:
            self.check_skill(request.skill)
        elif request.routed is None and not request.regenerate:
            command = self.router.command(request.text)
            if command is not None:
                self.check_skill(command, request)

    def around_disabled(self, decision: RouteDecision,
                        ) -> tuple[RouteDecision, str | None, Ticket | None]:
        """``decision`` and the turn's admission to its skill; or, when the decided skill's
        breaker sets the turn aside, the fallback skill and a notice saying why. The fallback
        is the last resort: when its breaker is open too it runs all the same, with a notice
        (a disabled chat must not make every turn an error). Without a fallback skill,
        :class:`~assistant.errors.SkillUnavailable`."""
        skill, fallback = decision.skill, self.router.fallback
        if skill not in self.plugins.skills:
            return decision, None, None  # the skill runner says it is not available
        ticket = self.plugins.admit(skill)
        if ticket is not None:
            return decision, None, ticket
        why = f"skill '{skill}' is {self.plugins.breaker(skill).why()}"
        if fallback not in self.plugins.skills:
            raise self.plugins.unavailable(skill)
        if skill != fallback:
            ticket = self.plugins.admit(fallback)
            if ticket is not None:
                return (self._fallback(decision, f"{why}; falling back to {fallback}"),
                        f"{why}; {fallback} answers instead.", ticket)
            why += f", and so is '{fallback}'"
        ticket = self.plugins.admit(fallback, force=True)
        instead = decision if skill == fallback else self._fallback(
            decision, f"{why}; {fallback} answers as the last resort")
        return instead, f"{why}; {fallback} answers all the same, as the last resort.", ticket

    def _fallback(self, decision: RouteDecision, explanation: str) -> RouteDecision:
        return RouteDecision("fallback", self.router.fallback, 0.0, decision.skill,
                             decision.score, explanation, decision.text, decision.scores)

    async def correct(self, text: str, skill: str, owner: int = 0) -> None:
        """Remember that ``text`` belongs to ``skill``: ``owner``'s similar turns follow it
        from now on."""
        await asyncio.to_thread(self.router_of(owner).correct, text, skill)

    async def route(self, text: str, request: TurnRequest) -> RouteDecision:
        """Where ``text`` goes: the client's skill, else the router, else chat."""
        if request.routed is not None:
            return request.routed
        skill = request.skill
        if skill is not None:
            if request.method == "correction":
                return RouteDecision("correction", skill, 1.0, None, 0.0,
                                     f"you re-routed this turn to '{skill}'", text)
            return RouteDecision("explicit", skill, 1.0, None, 0.0,
                                 f"the client asked for '{skill}'", text)
        try:
            return await self.router_of(request.owner).route(text)
        except AssistantError as exc:
            # No embedding model: explicit commands still work, the rest goes to chat.
            hit = self.router.explicit(text)
            if hit:
                return RouteDecision("explicit", hit[0], 1.0, None, 0.0,
                                     f"explicit command: you asked for '{hit[0]}'", hit[1])
            return RouteDecision("fallback", self.router.fallback, 0.0, None, 0.0,
                                 f"semantic routing unavailable ({exc.message})", text)
