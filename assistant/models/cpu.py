"""Which build of llama.cpp's CPU code runs: the fastest this CPU *and its OS* can run.

``make install`` builds llama.cpp with ``GGML_BACKEND_DL`` and ``GGML_CPU_ALL_VARIANTS``: the
CPU code is compiled once per CPU generation, as ``libggml-cpu-<variant>.so``, and none is
linked in. Left to itself ggml would load every variant and keep the best by CPUID, which
says what the processor has, not what the OS let it use: a virtual machine can report AVX-512
or AMX while its kernel never enabled their registers (XCR0), or never granted this process
AMX's tile state, and the first such instruction is a SIGILL. So the model host chooses here,
from what Linux says this process can run (the flags of ``/proc/cpuinfo``, which the kernel
clears for register state it did not enable, checked again against the state it supports and,
for AMX, the permission it granted), and loads that one library by its path before the first
model (:func:`load`). A variant that fails to load falls back to the next one down, and one
that passed every check yet killed a model host with SIGILL is left out (``avoid``: the daemon
keeps the list for its life, and the next host loads the variant below it).

``[models] cpu_variant`` forces one ("haswell" is the portable AVX2 baseline the benchmarks
compare against); one this machine cannot run is refused, never tried. The AMX variant is
chosen only that way (:data:`OPT_IN`): ggml's AMX code crashed where AMX was granted.

Nothing here imports llama_cpp: :func:`choose` and :func:`installed` also serve
``assistant models show`` in the CLI.
"""

from __future__ import annotations

import ctypes
import importlib.util
import platform
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.errors import ConfigError, ModelLoadError

_BASE = frozenset({"sse4_2"})
_AVX = _BASE | {"avx"}
_AVX2 = _AVX | {"f16c", "fma", "avx2", "bmi2"}
_AVX512 = _AVX2 | {"avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"}
_ICELAKE = _AVX512 | {"avx512vbmi", "avx512_vnni"}
_ZEN4 = _ICELAKE | {"avx512_bf16"}
# llama.cpp's x86 variants (ggml/src/CMakeLists.txt), best first, with the /proc/cpuinfo
# flags the compiler options of each need.
VARIANTS: tuple[tuple[str, frozenset[str]], ...] = (
    ("sapphirerapids", _ZEN4 | {"amx_tile", "amx_int8"}),
    ("zen4", _ZEN4),
    ("cooperlake", _AVX512 | {"avx512_vnni", "avx512_bf16"}),
    ("icelake", _ICELAKE),
    ("cascadelake", _AVX512 | {"avx512_vnni"}),
    ("cannonlake", _AVX512 | {"avx512vbmi"}),
    ("skylakex", _AVX512),
    ("alderlake", _AVX2 | {"avx_vnni"}),
    ("haswell", _AVX2),
    ("piledriver", _AVX | {"f16c", "fma"}),
    ("ivybridge", _AVX | {"f16c"}),
    ("sandybridge", _AVX),
    ("sse42", _BASE),
    ("x64", frozenset()),
)
NEEDS = dict(VARIANTS)
BASELINE = "haswell"
_RANK = {name: rank for rank, (name, _) in enumerate(VARIANTS)}  # 0 the best
# Loaded only when ``[models] cpu_variant`` names it. ggml's AMX code (the sapphirerapids
# variant's matrix products) died with an invalid opcode at its first ``tileloadd`` on an Intel
# Xeon VM whose kernel supports AMX and granted this process its tile state, on the first
# prompt of a few dozen tokens (2026-12-04, Linux 6.18, llama-cpp-python 0.3.36); a C program
# running the same instructions there did not. Upstream: llama.cpp PR #26954 (tile config
# optimised away, tile permission asked on the main thread only) and issue #20824. The variant
# below it (zen4: AVX-512 with VNNI and BF16) runs there.
OPT_IN = frozenset({"sapphirerapids"})


def above_baseline(variant: str) -> bool:
    """Whether ``variant`` ranks above :data:`BASELINE` (a crash steps only those down)."""
    return variant in _RANK and _RANK[variant] < _RANK[BASELINE]


_ARCH_GET_XCOMP_SUPP = 0x1021
_ARCH_GET_XCOMP_PERM = 0x1022
_ARCH_REQ_XCOMP_PERM = 0x1023
_SYS_ARCH_PRCTL = 158  # x86-64
_XFEATURE_XTILEDATA = 18
# The register state (XCR0 bits) the instructions of each flag need: YMM for the VEX-coded
# ones, opmask and ZMM for AVX-512, the tile config and data for AMX.
_STATE = ((1 << 2, ("avx", "f16c", "fma")), (0b111 << 5, ("avx512",)),
          (0b11 << 17, ("amx",)))


_AMX = 0b11 << 17
_ASK = -1  # usable_flags: ask the kernel


def x86_linux() -> bool:
    """The variants and checks here are x86-64 Linux's; elsewhere ggml chooses."""
    return sys.platform == "linux" and platform.machine() in {"x86_64", "AMD64"}


@dataclass(frozen=True)
class Choice:
    """A variant to load, its library, and why this one."""

    variant: str | None
    path: Path | None
    reason: str

    def describe(self) -> str:
        return f"{self.variant or 'built in'} ({self.reason})"


def usable_flags(cpuinfo: str | None = None, xstate: int | None = _ASK,
                 request_amx: bool = False) -> set[str]:
    """The CPU flags this process may use: the first CPU's flags in ``/proc/cpuinfo``, less
    those whose register state the kernel does not support (``xstate``; by default asked of
    the kernel, None when it cannot say, as before Linux 5.16, which cannot run AMX either).
    With ``request_amx`` (the model host, before it loads a variant) AMX counts only once this
    process asked for it and was granted it; without, when the kernel can grant it."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return set()
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags = set(value.split())
            break
    if xstate == _ASK:
        xstate = _kernel_xstate(request_amx)
    if xstate is None:
        xstate = ~_AMX
    for bits, prefixes in _STATE:
        if xstate & bits != bits:
            flags = {f for f in flags if not f.startswith(prefixes)}
    return flags


def _arch_prctl_get(code: int) -> int | None:
    """arch_prctl(code, &value) → value, or None when it fails."""
    value = ctypes.c_uint64(0)
    libc = ctypes.CDLL(None)
    if libc.syscall(ctypes.c_long(_SYS_ARCH_PRCTL), ctypes.c_long(code), ctypes.byref(value)):
        return None
    return int(value.value)


def _arch_prctl_set(code: int, argument: int) -> bool:
    libc = ctypes.CDLL(None)
    return bool(libc.syscall(ctypes.c_long(_SYS_ARCH_PRCTL), ctypes.c_long(code),
                             ctypes.c_ulong(argument)) == 0)


def _kernel_xstate(request_amx: bool) -> int | None:
    """The register state the kernel supports (XCR0 as it set it); with ``request_amx``, AMX's
    tile state only once this process was granted it. None when the kernel cannot say."""
    if not x86_linux():
        return None
    supported = _arch_prctl_get(_ARCH_GET_XCOMP_SUPP)
    if supported is None or not request_amx or not supported & (1 << _XFEATURE_XTILEDATA):
        return supported
    _arch_prctl_set(_ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA)
    granted = _arch_prctl_get(_ARCH_GET_XCOMP_PERM) or 0
    return supported if granted & (1 << _XFEATURE_XTILEDATA) else supported & ~_AMX


def library_dirs() -> list[Path]:
    """Where llama-cpp-python's build puts the variant libraries: beside its own libraries,
    or in the ``bin`` directory its CMake install step makes in site-packages."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        return []
    package = Path(spec.origin).parent
    return [package / "lib", package.parent / "bin", package.parent / "lib"]


def installed(dirs: list[Path] | None = None) -> dict[str, Path]:
    """The variant libraries installed: name → path."""
    found: dict[str, Path] = {}
    for directory in library_dirs() if dirs is None else dirs:
        for path in sorted(directory.glob("libggml-cpu-*.so")):
            found.setdefault(path.name[len("libggml-cpu-"):-len(".so")], path)
    return found


def choose(libraries: dict[str, Path], flags: set[str], forced: str = "auto",
           avoid: Iterable[str] = ()) -> list[Choice]:
    """The variants to try, best first: the installed ones this CPU can run, less those in
    ``avoid`` (they died with SIGILL in an earlier model host), or ``forced``.

    Empty when the build has no variants (llama.cpp's CPU code is linked in). A ``forced``
    variant that is unknown, not installed, or needs flags this machine lacks is a
    ConfigError naming what is missing: never loaded to find out. A ``forced`` variant is
    never stepped down, whatever ``avoid`` says.
    """
    if forced != "auto":
        if not libraries:
            raise ConfigError(
                f"models.cpu_variant = {forced!r}, but this llama.cpp build has no CPU "
                "variants", 'Rebuild with `make install`, or set models.cpu_variant = "auto".')
        if forced not in libraries or forced not in NEEDS:
            raise ConfigError(f"models.cpu_variant = {forced!r} is not an installed variant",
                              "Choose one of: auto, " + ", ".join(
                                  name for name, _ in VARIANTS if name in libraries) + ".")
        missing = sorted(NEEDS[forced] - flags)
        if missing:
            raise ConfigError(
                f"models.cpu_variant = {forced!r} needs {', '.join(missing)}, which this CPU "
                "or its OS does not provide", 'Set models.cpu_variant = "auto".')
        return [Choice(forced, libraries[forced], "set by models.cpu_variant")]
    avoided = set(avoid)
    runnable = [name for name, need in VARIANTS
                if name in libraries and need <= flags and name not in OPT_IN]
    crashed = [name for name in runnable if name in avoided]
    reason = "the best this CPU and OS can run" + (
        f"; {', '.join(crashed)} died with SIGILL" if crashed else "")
    return [Choice(name, libraries[name], reason) for name in runnable if name not in avoided]


def planned(forced: str = "auto") -> str:
    """What the model host will load, in words (``assistant models show``); raises
    ConfigError for a ``forced`` variant it would refuse (the daemon checks at start)."""
    libraries = installed()
    if libraries and not x86_linux():
        return "ggml's choice (not x86-64 Linux)"
    choices = choose(libraries, usable_flags(), forced)
    return choices[0].describe() if choices else "built in (llama.cpp built for one CPU)"


_loaded: dict[str, Any] | None = None


def load(forced: str = "auto", avoid: Iterable[str] = ()) -> dict[str, Any]:
    """Load the chosen variant into this process's llama.cpp, once, before its first model
    (the model host's; a benchmark's or an evaluation's own ``Llama``); what was loaded, as
    ``info`` reports it. Falls back down the list when a library does not load (ggml refuses
    one whose CPUID check fails). ``avoid``: variants that died with SIGILL in an earlier
    model host, never chosen by "auto" (:func:`choose`). A build without variants has its
    CPU code linked in."""
    global _loaded
    if _loaded is None:
        _loaded = _load(forced, tuple(avoid))
    elif forced not in {"auto", _loaded["variant"]}:
        raise ConfigError(f"models.cpu_variant = {forced!r}, but this process already runs "
                          f"{_loaded['variant'] or 'its built-in CPU code'}",
                          "Restart the daemon after changing models.cpu_variant.")
    return _loaded


def in_use() -> dict[str, Any] | None:
    """What :func:`load` loaded into this process, or ``None`` before it ran."""
    return _loaded


def _libggml() -> ctypes.CDLL:
    """The libggml whose backend registry libllama reads. The wheel holds two copies of it
    (``libggml.so`` and ``libggml.so.0``, files, not links) and ``llama_cpp._ggml`` opens the
    first, so a backend registered through it is one llama never sees. libllama needs
    ``libggml.so.0`` from its own directory; opening that same file returns the same library.
    The variant libraries have no RPATH: they link to the libggml-base already loaded."""
    from llama_cpp import llama_cpp as bindings

    beside = Path(bindings._lib._name).parent / "libggml.so.0"
    if beside.exists():
        return ctypes.CDLL(str(beside))
    from llama_cpp import _ggml
    lib: ctypes.CDLL = _ggml.libggml
    return lib


def _load(forced: str, avoid: tuple[str, ...]) -> dict[str, Any]:
    lib = _libggml()
    lib.ggml_backend_load.argtypes = [ctypes.c_char_p]
    lib.ggml_backend_load.restype = ctypes.c_void_p
    lib.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
    lib.ggml_backend_reg_by_name.argtypes = [ctypes.c_char_p]
    lib.ggml_backend_reg_by_name.restype = ctypes.c_void_p
    if lib.ggml_backend_reg_by_name(b"CPU"):
        return {"variant": None, "reason": "llama.cpp built for one CPU"}
    libraries = installed()
    if not x86_linux():
        for directory in dict.fromkeys(path.parent for path in libraries.values()):
            lib.ggml_backend_load_all_from_path(str(directory).encode())
        return {"variant": None, "reason": "ggml's choice (not x86-64 Linux)"}
    candidates = choose(libraries, usable_flags(request_amx=forced in OPT_IN), forced, avoid)
    failed: list[str] = []
    for choice in candidates:
        if lib.ggml_backend_load(str(choice.path).encode()):
            reason = choice.reason + (f"; {', '.join(failed)} did not load" if failed else "")
            return {"variant": choice.variant, "reason": reason}
        failed.append(str(choice.variant))
    raise ModelLoadError("no CPU variant of llama.cpp loaded on this machine"
                         + (f" (tried {', '.join(failed)})" if failed else "")
                         + (f"; {', '.join(avoid)} died with SIGILL" if avoid else ""),
                         "Restart the daemon (it forgets the variants that died with SIGILL), "
                         "or set models.cpu_variant." if avoid else
                         "Rebuild with `make install` on it.")
