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


def test_instruction_set_follows_the_environment():
    assert "generic" in fastrnn._C.supported_isas()
    out = run_python("import fastrnn; print(fastrnn.build_info()['isa'])", FASTRNN_ISA="generic")
    assert out == "generic"
    # A set the CPU lacks is ignored rather than crashing on an illegal instruction.
    out = run_python("import fastrnn; print(fastrnn.build_info()['isa'])", FASTRNN_ISA="no-such-isa")
    assert out == fastrnn.build_info()["isa_best"]


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
