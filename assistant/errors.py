"""Every error the assistant raises on purpose.

    AssistantError                 root: a message for the user and what to do about it
     ├── ConfigError               a bad setting (names the file or variable and the key)
     │    └── UnsafePath           a file or dir of ours that leads out of its dir (symlink)
     ├── ModelError                a model cannot be found, installed or loaded
     │    ├── ModelNotFound
     │    ├── ModelIntegrityError  sha256 mismatch, or not a valid model file
     │    ├── ChatTemplateError    the model's chat template is refused (unsafe, too big, slow)
     │    ├── ModelLoadError
     │    │    ├── HostError       the model host reported an error (its exception's type)
     │    │    └── HostStopped     the model host stopped mid-request; it restarts: retry
     │    ├── MemoryBudgetFull     the pinned models leave no room in the memory budget
     │    ├── BackendFailed        a plugin's model backend raised (a remote engine down)
     │    ├── EngineUnavailable    a remote engine ([engines.NAME]) cannot be reached, or is
     │    │                        busy (its 429/503): retry after ``retry_after``
     │    └── EngineRefusedKey     a remote engine refused its key, or the variable holding
     │                             the key is not set: names the variable
     ├── DaemonError               the daemon cannot be reached, started or used
     │    ├── DaemonNotRunning
     │    └── QueueFull
     ├── RequestError              a request the API refuses (status, code, field)
     ├── InputError                input the caller gave that cannot be used (a file that
     │                             cannot be read): the caller's, never a plugin's failure
     ├── StorageError              the conversation store cannot be used
     │    ├── StorageUnavailable   disk full, read-only: retry later
     │    └── MalformedImport      an import file that cannot be read; nothing stored
     └── PluginError               a plugin failed to load or misbehaved
          ├── SkillFailed          a skill's own code raised or ran past its timeout
          ├── SkillUnavailable     the skill is set aside by its circuit breaker for now
          └── HookTimeout          a hook or guard ran past plugins.hook_timeout

CLI and TUI render these once, at the edge; nothing below them prints.
"""

from __future__ import annotations


class AssistantError(Exception):
    """Root of the tree. ``hint`` tells the user what to do next."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n{self.hint}"


class ConfigError(AssistantError):
    exit_code = 2


class UnsafePath(ConfigError):
    """A path the assistant would read or write that leads out of the dir it belongs in."""


class ModelError(AssistantError):
    pass


class ModelNotFound(ModelError):
    pass


class ModelIntegrityError(ModelError):
    pass


class ModelLoadError(ModelError):
    pass


class HostStopped(ModelLoadError):
    """The model host stopped (crashed, killed) while serving the request; it restarts on the
    next one, so the request is worth retrying at once."""


class MemoryBudgetFull(ModelError):
    """A model does not fit in ``models.memory_budget_mb`` beside the pinned models, which are
    never evicted: a retry cannot help until one is unloaded or the budget raised."""


class BackendFailed(ModelError):
    """A plugin's model backend raised an error of its own (a remote engine unreachable):
    the infrastructure's failure, counted against that plugin, never against a skill."""

    def __init__(self, message: str, hint: str | None = None, plugin: str | None = None,
                 ) -> None:
        super().__init__(message, hint)
        self.plugin = plugin


class EngineUnavailable(ModelError):
    """A remote engine cannot be reached, stopped mid-reply, or said it is busy (429, 503):
    ``engine`` names it, ``retry_after`` is when to try again (its own, or our backoff)."""

    def __init__(self, message: str, engine: str = "", retry_after: int = 5,
                 hint: str | None = None) -> None:
        super().__init__(message, hint or "Try again shortly; `assistant daemon status` shows "
                         "the engine's state.")
        self.engine = engine
        self.retry_after = retry_after


class EngineRefusedKey(ModelError):
    """A remote engine answered 401 or 403, or its key's variable is not set: what helps is
    setting the variable ``variable`` in the daemon's environment, not a retry."""

    def __init__(self, message: str, engine: str = "", variable: str = "") -> None:
        hint = (f"Set {variable} in the daemon's environment to a key the engine accepts, then "
                "restart the daemon (`assistant daemon stop`)." if variable else
                f"Set engines.{engine}.api_key_env to the variable that holds its key."
                if engine else None)  # read back from HTTP: the message says it all
        super().__init__(message, hint)
        self.engine = engine
        self.variable = variable


class ChatTemplateError(ModelError):
    """The model's own chat template was refused by the sandbox: the request cannot be served
    with that model file, whatever is retried (so the API answers 400, not 503)."""


class HostError(ModelLoadError):
    """An error the model host reported; ``kind`` is the name of the host's exception type.
    When the host ended (``HostCrashed``, ``HostHung``), ``pid`` and ``returncode`` say which
    process and how (a negative code: the signal that ended it)."""

    def __init__(self, kind: str, message: str, pid: int | None = None,
                 returncode: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.pid = pid
        self.returncode = returncode


class DaemonError(AssistantError):
    pass


class DaemonNotRunning(DaemonError):
    pass


class QueueFull(DaemonError):
    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message, "Try again shortly.")
        self.retry_after = retry_after


class RequestError(AssistantError):
    """A request the API refuses; ``status`` is the HTTP status, ``code`` a stable token."""

    def __init__(
        self, message: str, *, status: int = 400, code: str = "invalid_request",
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.param = param


class InputError(AssistantError):
    """Input the caller gave that cannot be used as it is: a file that cannot be read, a
    format no reader supports. The caller can fix it; it never counts against a plugin."""


class StorageError(AssistantError):
    pass


class StorageUnavailable(StorageError):
    pass


class MalformedImport(StorageError):
    """An import file that cannot be read; nothing was stored."""


class PluginError(AssistantError):
    pass


class SkillFailed(PluginError):
    """A skill's own code raised, or ran past the skill timeout."""


class SkillUnavailable(PluginError):
    """A skill failed too often and is set aside until ``retry_after`` seconds have passed
    (then one turn tries it again) or someone runs ``assistant plugins enable``."""

    def __init__(self, message: str, hint: str | None = None,
                 retry_after: int | None = 60) -> None:
        super().__init__(message, hint)
        self.retry_after = retry_after  # None: only a re-arm helps (cooldown 0)


class HookTimeout(PluginError):
    """A hook or a guard's call ran past ``plugins.hook_timeout``; the turn went on without
    it (it counts as a failure of that hook or guard)."""
