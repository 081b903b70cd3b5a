"""Which llama.cpp CPU variant the model host loads: never one the CPU or its OS cannot run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from assistant.errors import ConfigError, ModelLoadError
from assistant.models import cpu

ZEN4 = ("fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi1 bmi2 avx512f avx512dq "
        "avx512cd avx512bw avx512vl avx512vbmi avx512_vnni avx512_bf16")
SAPPHIRE = ZEN4 + " amx_tile amx_int8 amx_bf16"
ALL_STATE = 0b11 << 17 | 0b111 << 5 | 0b111  # x87, SSE, AVX, AVX-512, AMX


def cpuinfo(flags: str) -> str:
    return f"processor\t: 0\nvendor_id\t: X\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: sse\n"


def libraries(*names: str) -> dict[str, Path]:
    return {name: Path(f"/lib/libggml-cpu-{name}.so") for name in names}


EVERY = libraries(*(name for name, _ in cpu.VARIANTS))


def test_the_best_variant_the_flags_allow_is_chosen_then_the_ones_below() -> None:
    flags = cpu.usable_flags(cpuinfo(ZEN4), ALL_STATE)
    chosen = [c.variant for c in cpu.choose(EVERY, flags)]
    assert chosen[0] == "zen4"
    assert chosen.index("haswell") < chosen.index("x64") and "sapphirerapids" not in chosen
    # AMX's variant only when named: ggml's AMX code crashed where the kernel granted AMX.
    on_amx = cpu.usable_flags(cpuinfo(SAPPHIRE), ALL_STATE)
    assert [c.variant for c in cpu.choose(EVERY, on_amx)][:2] == ["zen4", "cooperlake"]
    assert [c.variant for c in cpu.choose(EVERY, on_amx, "sapphirerapids")] == [
        "sapphirerapids"]
    only_two = cpu.choose(libraries("haswell", "x64"), flags)
    assert [c.variant for c in only_two] == ["haswell", "x64"]


def test_register_state_the_kernel_did_not_enable_rules_out_its_instructions() -> None:
    """A VM's CPUID can report AVX-512 or AMX its OS never enabled (XCR0), or AMX this
    process was not granted: those variants are never chosen."""
    no_amx = cpu.usable_flags(cpuinfo(SAPPHIRE), ALL_STATE & ~(0b11 << 17))
    assert not {f for f in no_amx if f.startswith("amx")}
    assert cpu.choose(EVERY, no_amx)[0].variant == "zen4"
    no_zmm = cpu.usable_flags(cpuinfo(SAPPHIRE), 0b111)
    assert cpu.choose(EVERY, no_zmm)[0].variant == "haswell"
    no_ymm = cpu.usable_flags(cpuinfo(SAPPHIRE), 0b11)
    assert not no_ymm & {"avx", "avx2", "f16c", "fma", "avx512f"}
    assert cpu.choose(EVERY, no_ymm)[0].variant == "sse42"
    # A kernel that cannot say (before Linux 5.16) cannot run AMX either.
    assert cpu.usable_flags(cpuinfo(SAPPHIRE), None) == set(ZEN4.split())


def test_amx_counts_only_once_the_kernel_granted_it_to_the_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    granted: set[int] = set()
    monkeypatch.setattr(cpu, "x86_linux", lambda: True)
    monkeypatch.setattr(cpu, "_arch_prctl_get", lambda code: {
        cpu._ARCH_GET_XCOMP_SUPP: ALL_STATE,
        cpu._ARCH_GET_XCOMP_PERM: sum(1 << b for b in granted)}[code])
    monkeypatch.setattr(cpu, "_arch_prctl_set", lambda code, feature: False)  # refused
    assert "amx_tile" in cpu.usable_flags(cpuinfo(SAPPHIRE))  # grantable: the daemon's check
    assert "amx_tile" not in cpu.usable_flags(cpuinfo(SAPPHIRE), request_amx=True)
    monkeypatch.setattr(cpu, "_arch_prctl_set", lambda code, feature: granted.add(feature) or 1)
    assert "amx_tile" in cpu.usable_flags(cpuinfo(SAPPHIRE), request_amx=True)
    assert granted == {cpu._XFEATURE_XTILEDATA}


def test_a_forced_variant_is_used_or_refused_with_what_is_missing() -> None:
    flags = cpu.usable_flags(cpuinfo(ZEN4), ALL_STATE)
    forced = cpu.choose(EVERY, flags, "haswell")
    assert [(c.variant, c.reason) for c in forced] == [("haswell", "set by models.cpu_variant")]
    with pytest.raises(ConfigError, match="'sapphirerapids' needs amx_int8, amx_tile"):
        cpu.choose(EVERY, flags, "sapphirerapids")
    with pytest.raises(ConfigError, match="'zen4' is not an installed variant") as error:
        cpu.choose(libraries("haswell", "x64"), flags, "zen4")
    assert error.value.hint == "Choose one of: auto, haswell, x64."
    with pytest.raises(ConfigError, match="'armv9' is not an installed variant"):
        cpu.choose({**EVERY, **libraries("armv9")}, flags, "armv9")  # never tried blind


def test_a_variant_that_died_with_sigill_is_skipped_by_auto_and_named_in_the_reason() -> None:
    flags = cpu.usable_flags(cpuinfo(ZEN4), ALL_STATE)
    chosen = cpu.choose(EVERY, flags, avoid=["zen4"])
    assert [c.variant for c in chosen][:2] == ["cooperlake", "icelake"]
    assert chosen[0].reason == "the best this CPU and OS can run; zen4 died with SIGILL"
    both = cpu.choose(EVERY, flags, avoid=["cooperlake", "zen4"])
    assert both[0].variant == "icelake"
    assert both[0].reason == "the best this CPU and OS can run; zen4, cooperlake died with SIGILL"
    # Only variants auto would have chosen are named: these were never candidates here.
    other = cpu.choose(EVERY, flags, avoid=["sapphirerapids", "alderlake"])
    assert (other[0].variant, other[0].reason) == ("zen4", "the best this CPU and OS can run")
    # A forced variant is never stepped down.
    forced = cpu.choose(EVERY, flags, "zen4", avoid=["zen4"])
    assert [(c.variant, c.reason) for c in forced] == [("zen4", "set by models.cpu_variant")]


def test_a_build_without_variants_has_nothing_to_choose() -> None:
    assert cpu.choose({}, {"avx2"}) == []
    with pytest.raises(ConfigError, match="no CPU variants"):
        cpu.choose({}, {"avx2"}, "haswell")


def test_installed_variants_are_found_by_name(tmp_path: Path) -> None:
    for name in ("libggml-cpu-zen4.so", "libggml-cpu-haswell.so", "libggml-base.so"):
        (tmp_path / name).write_bytes(b"")
    assert cpu.installed([tmp_path, tmp_path / "absent"]) == {
        "haswell": tmp_path / "libggml-cpu-haswell.so", "zen4": tmp_path / "libggml-cpu-zen4.so"}


class FakeGgml:
    """libggml's backend registry: loads what it is told, refusing ``refuse``."""

    def __init__(self, refuse: set[str], cpu_linked: bool = False) -> None:
        self.refuse, self.cpu_linked, self.loaded = refuse, cpu_linked, []

        def load(path: bytes) -> int:
            if path.decode().rsplit("-", 1)[-1][:-3] in self.refuse:
                return 0
            self.loaded.append(path.decode())
            return 1

        self.ggml_backend_load = Function(load)
        self.ggml_backend_load_all_from_path = Function(lambda path: None)
        self.ggml_backend_reg_by_name = Function(lambda name: int(self.cpu_linked))


class Function:
    def __init__(self, call: Any) -> None:
        self.call, self.argtypes, self.restype = call, None, None

    def __call__(self, *args: Any) -> Any:
        return self.call(*args)


def fake_llama_cpp(monkeypatch: pytest.MonkeyPatch, lib: FakeGgml) -> None:
    monkeypatch.setattr(cpu, "_libggml", lambda: lib)
    monkeypatch.setattr(cpu, "_loaded", None)
    monkeypatch.setattr(cpu, "x86_linux", lambda: True)
    monkeypatch.setattr(cpu, "installed", lambda: libraries("haswell", "zen4", "x64"))
    monkeypatch.setattr(cpu, "usable_flags", lambda **_: set(_ZEN4_FLAGS))


_ZEN4_FLAGS = cpu.usable_flags(cpuinfo(ZEN4), ALL_STATE)


def test_a_variant_that_fails_to_load_falls_back_to_the_next_and_loads_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    lib = FakeGgml(refuse={"zen4"})
    fake_llama_cpp(monkeypatch, lib)
    first = cpu.load()
    assert first == {"variant": "haswell",
                     "reason": "the best this CPU and OS can run; zen4 did not load"}
    assert cpu.load() is first and cpu.load("haswell") is first
    assert lib.loaded == ["/lib/libggml-cpu-haswell.so"]
    with pytest.raises(ConfigError, match="already runs haswell"):
        cpu.load("x64")


def test_load_skips_the_variants_to_avoid_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = FakeGgml(refuse={"haswell"})
    fake_llama_cpp(monkeypatch, lib)
    assert cpu.load(avoid=["zen4"]) == {"variant": "x64", "reason": (
        "the best this CPU and OS can run; zen4 died with SIGILL; haswell did not load")}
    assert lib.loaded == ["/lib/libggml-cpu-x64.so"]
    forced = FakeGgml(refuse=set())
    fake_llama_cpp(monkeypatch, forced)
    assert cpu.load("zen4", avoid=["zen4"]) == {"variant": "zen4",
                                                "reason": "set by models.cpu_variant"}
    fake_llama_cpp(monkeypatch, FakeGgml(refuse={"haswell"}))
    with pytest.raises(ModelLoadError, match=r"\(tried haswell\); zen4, x64 died with SIGILL"):
        cpu.load(avoid=["zen4", "x64"])


def test_nothing_loadable_is_an_error_and_a_linked_build_needs_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake_llama_cpp(monkeypatch, FakeGgml(refuse={"zen4", "haswell", "x64"}))
    with pytest.raises(ModelLoadError, match=r"tried zen4, haswell, x64"):
        cpu.load()
    linked = FakeGgml(refuse=set(), cpu_linked=True)
    fake_llama_cpp(monkeypatch, linked)
    assert cpu.load() == {"variant": None, "reason": "llama.cpp built for one CPU"}
    assert linked.loaded == []


def test_this_machine_is_read_without_loading_llama_cpp() -> None:
    """``assistant models show`` says what the host would load, without loading it."""
    code = ("import sys; from assistant.models import cpu; print(cpu.planned()); "
            "c = cpu.choose(cpu.installed(), cpu.usable_flags()); "
            "print(c[0].variant if c else 'built in'); print('llama_cpp' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0].startswith(f"{out[1]} (") and out[2] == "False"
