"""The torchvision CPU fix: it ran (make), torchvision works, and the stub source is right."""

import subprocess
import sys

import pytest

from cellnb import tvfix


def test_torchvision_imports_and_runs_an_op_on_cpu():
    tvfix.check()  # fresh interpreter: import torchvision + nms on CPU tensors


def test_fix_is_idempotent():
    assert tvfix.fix(verbose=False) == []  # make already ran it, or torch has CUDA


def test_patched_libraries_need_no_cuda_library():
    if tvfix.torch_has_cuda():
        pytest.skip("torch has CUDA: the fix is a no-op")
    for name in ("_C.so", "image.so"):
        needed = tvfix.needed_libraries(tvfix.torchvision_dir() / name)
        assert not set(tvfix.CUDA_LIBS) & set(needed), needed
        assert tvfix.STUB_NAME in needed


def test_stub_source_defines_functions_and_objects():
    src = tvfix.stub_source({"_ZN3c104cuda12device_countEv": "FUNC", "_ZN3c104cuda20CUDACachingAllocator9allocatorE": "OBJECT"})
    assert 'void _ZN3c104cuda12device_countEv(void) { cellnb_stub_called("_ZN3c104cuda12device_countEv"); }' in src
    assert "void *_ZN3c104cuda20CUDACachingAllocator9allocatorE[8] = {0};" in src


def test_stub_aborts_loudly_if_called(tmp_path):
    lib = tvfix.build_stub({"_ZN3c104cuda12device_countEv": "FUNC"}, tmp_path)
    code = f"import ctypes; ctypes.CDLL({str(lib)!r})._ZN3c104cuda12device_countEv()"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert "called, but torch has no CUDA" in result.stderr


def test_cli_check_only():
    assert tvfix.main(["--check-only"]) == 0
