"""The package: build information, run-time instruction-set choice, imports."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

import fastrnn

REPO = pathlib.Path(__file__).resolve().parents[1]


def run_python(code, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, **env}).stdout.strip()


def test_build_info_describes_the_build():
    info = fastrnn.build_info()
    assert info["version"] == fastrnn.__version__ and re.match(r"\d+\.\d+", info["version"])
    assert info["compiler"].startswith(("gcc", "clang"))
    assert int(info["openmp"]) >= 201107
    assert info["omp_max_threads"] >= 1
    assert info["isa"] in ("generic", "avx2", "avx512")
    assert info["isa"] == info["isa_best"]
    assert isinstance(info["cuda_compiled"], bool)
    assert info["cuda_device_available"] == (info["cuda_device_count"] > 0)
    if info["cuda_compiled"]:
        assert info["cuda_archs"] and info["cuda_runtime"]


@pytest.mark.skipif(os.environ.get("FASTRNN_CUDA", "").upper() != "ON", reason="installed without FASTRNN_CUDA=ON")
def test_cuda_build_imports_and_reports_itself():
    # CI installs with FASTRNN_CUDA=ON: the CUDA sources went through nvcc, and the module
    # still imports and runs its CPU paths on a machine without a GPU.
    info = fastrnn.build_info()
    assert info["cuda_compiled"]
    assert all(arch.isdigit() for arch in info["cuda_archs"].split(","))


ISAS = ["generic", "avx2", "avx512"]  # each one's instructions include the previous one's


def import_with_isa(value, *warning_flags):
    """Imports fastrnn in a child process with FASTRNN_ISA=value: (return code, ISA in use, stderr)."""
    env = {k: v for k, v in os.environ.items() if k not in ("FASTRNN_ISA", "PYTHONWARNINGS")}
    if value is not None:
        env["FASTRNN_ISA"] = value
    out = subprocess.run([sys.executable, *warning_flags, "-c", "import fastrnn; print(fastrnn.build_info()['isa'])"],
                         capture_output=True, text=True, env=env)
    return out.returncode, out.stdout.strip(), out.stderr


@pytest.mark.parametrize("value", ISAS + ["AVX2", "Generic"])
def test_instruction_set_follows_the_environment_as_a_ceiling(value):
    # FASTRNN_ISA caps the set: the best this CPU supports at or below the one named (any case),
    # so a set the CPU lacks (avx512 on an AVX2 CPU) gives the best it has, never an illegal
    # instruction, and no warning: one setting suits every machine.
    assert "generic" in fastrnn._C.supported_isas()
    ceiling = ISAS.index(value.lower())
    expected = [isa for isa in fastrnn._C.supported_isas() if ISAS.index(isa) <= ceiling][-1]
    assert import_with_isa(value, "-W", "error") == (0, expected, "")


@pytest.mark.parametrize("value", [None, ""])
def test_unset_or_empty_environment_gives_the_best_set(value):
    assert import_with_isa(value, "-W", "error") == (0, fastrnn.build_info()["isa_best"], "")


@pytest.mark.parametrize("value", ["bogus", "avx-512", "sse4"])
def test_unknown_instruction_set_in_the_environment_warns_at_import(value):
    # Ignored, as torch ignores a bad ATEN_CPU_CAPABILITY, but said: a warning naming the valid
    # values, and the import still works.
    code, isa, stderr = import_with_isa(value)
    assert code == 0 and isa == fastrnn.build_info()["isa_best"], stderr
    assert stderr.count("RuntimeWarning") == 1, stderr
    assert (f"FASTRNN_ISA='{value}' names no instruction set; expected generic, avx2 or avx512 (any case), "
            f"or unset. Using {isa}, the best this CPU supports.") in stderr
    assert import_with_isa(value, "-W", "ignore::RuntimeWarning:fastrnn._C") == (0, isa, "")
    # With warnings as errors the import fails, with the same message.
    code, _, stderr = import_with_isa(value, "-W", "error::RuntimeWarning")
    assert code != 0 and f"RuntimeWarning: FASTRNN_ISA='{value}' names no instruction set" in stderr


def test_set_isa_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown instruction set"):
        fastrnn._C.set_isa("sse9")


def test_import_does_not_pull_torch():
    out = run_python("import sys, fastrnn, fastrnn.numpy; print('torch' in sys.modules)")
    assert out == "False"


def test_install_does_not_require_torch():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not any(dep.startswith("torch") for dep in project["dependencies"])
    assert any(dep.startswith("torch") for dep in project["optional-dependencies"]["torch"])


def test_core_kernels_never_allocate():
    # The core takes every buffer from its caller (ARCHITECTURE.md). Error messages may build
    # strings; nothing on a kernel's path may allocate.
    pattern = re.compile(r"\b(malloc|calloc|realloc|new\s+\w|std::vector|make_unique|make_shared)\b")
    offenders = []
    for path in list((REPO / "csrc" / "cpu").rglob("*.[ch]*")) + list((REPO / "csrc" / "cells").rglob("*.h")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line.split("//")[0]):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "allocation in the core:\n" + "\n".join(offenders)
