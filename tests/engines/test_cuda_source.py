"""The CUDA engine's kernel source (fcnet/engines/cuda/kernels.cu), compiled by nvcc where it is installed: a GPU is
not needed to find a kernel that does not compile, so this runs where tests/engines/test_gpu.py skips.

CuPy compiles the same source with NVRTC on the GPU; both are CUDA's front end, with the same options.
"""

import shutil
import subprocess

import numpy as np
import pytest

from fcnet.engines import cuda

NVCC = shutil.which("nvcc")


@pytest.mark.slow
@pytest.mark.skipif(NVCC is None, reason="no nvcc (CUDA's compiler) here")
def test_every_kernel_the_engine_launches_compiles_for_hopper_in_both_dtypes(tmp_path):
    names = {name for dtype in (np.float32, np.float64) for x_dtype in (np.uint8, dtype)
             for name in cuda.kernel_names(dtype, x_dtype).values()}
    refs = ", ".join(f"(const void*)&{name}" for name in sorted(names))  # taking each address instantiates it
    source = tmp_path / "kernels.cu"
    source.write_text(f"{cuda.SOURCE}\nconst void* instantiated[] = {{{refs}}};\n")
    done = subprocess.run([NVCC, "-arch=sm_90", "--fmad=false", "-Werror", "all-warnings", "-Xptxas", "-v", "-c",
                           str(source), "-o", str(tmp_path / "kernels.o")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    entries = [line for line in done.stderr.splitlines() if "Compiling entry function" in line]
    assert len(entries) == len(names) == 16  # 7 kernels x 2 dtypes, and gather from float inputs as well
