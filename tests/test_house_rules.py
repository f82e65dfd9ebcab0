"""The layering rules of ARCHITECTURE.md that a reader can check from the source alone: the core
back ends do not include each other, the shared layers include neither, and no file or Python
function grows past the size a reader can hold (C++ function length: `lizard -L 120 csrc`)."""

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
MAX_FILE_LINES = 800
MAX_FUNCTION_LINES = 120
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
FORBIDDEN = {"cpu": ("cuda/",), "cuda": ("cpu/",), "common": ("cpu/", "cuda/"), "cells": ("cpu/", "cuda/")}


def sources(folder, suffixes):
    return sorted(p for p in folder.rglob("*") if p.suffix in suffixes and "__pycache__" not in p.parts)


@pytest.mark.parametrize("layer", sorted(FORBIDDEN), ids=lambda layer: f"csrc-{layer}")
def test_a_layer_includes_no_header_of_the_layers_beside_or_above_it(layer):
    wrong = [f"{path.relative_to(ROOT)} includes {name}"
             for path in sources(CSRC / layer, {".h", ".cpp", ".cu", ".cuh"})
             for name in INCLUDE.findall(path.read_text()) if name.startswith(FORBIDDEN[layer])]
    assert not wrong, "\n".join(wrong)


def test_cuda_sources_name_nothing_of_the_cpu_back_end():
    wrong = [str(p.relative_to(ROOT)) for p in sources(CSRC / "cuda", {".h", ".cu", ".cuh"})
             if "cpu::" in p.read_text()]
    assert not wrong, wrong


def test_no_source_file_is_longer_than_800_lines():
    files = sources(CSRC, {".h", ".cpp", ".cu", ".cuh"}) + sources(ROOT / "python", {".py"})
    long = [f"{p.relative_to(ROOT)}: {n}" for p in files if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES]
    assert not long, long


def test_no_python_function_is_longer_than_120_lines():
    long = []
    for path in sources(ROOT / "python", {".py"}):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {lines}")
    assert not long, long
