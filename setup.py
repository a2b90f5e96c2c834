"""Builds fusedrnn._C: the C++ CPU ops always, the CUDA ops when torch is a CUDA build and nvcc is found.

FUSEDRNN_CUDA=auto (default) | 1 (require CUDA) | 0 (CPU only).
TORCH_CUDA_ARCH_LIST defaults to "8.0;9.0+PTX"; MAX_JOBS limits parallel compile jobs.
`pip install .` builds against the installed torch (see build_backend/fusedrnn_build.py).
"""

import glob
import importlib.util
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# torch.utils.cpp_extension reads CUDA_HOME when it is imported; with nvcc reached through /usr/local/bin
# its own guess is /usr/local and the link fails on -lcudart. So settle it first.
if not os.environ.get("CUDA_HOME") and not os.environ.get("CUDA_PATH") and os.path.exists("/usr/local/cuda"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"
os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0+PTX")

import torch  # noqa: E402
from setuptools import setup  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402


def find_nvcc():
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if cuda_home:
        candidate = os.path.join(cuda_home, "bin", "nvcc")
        if os.path.exists(candidate):
            return candidate
    return shutil.which("nvcc")


def want_cuda():
    mode = os.environ.get("FUSEDRNN_CUDA", "auto").lower()
    if mode not in ("auto", "1", "0"):
        sys.exit(f"FUSEDRNN_CUDA must be auto, 1 or 0, got {mode!r}")
    if mode == "0":
        return False
    torch_has_cuda = torch.version.cuda is not None
    nvcc = find_nvcc()
    if mode == "1" and not (torch_has_cuda and nvcc):
        sys.exit(
            "FUSEDRNN_CUDA=1 needs a CUDA build of torch and nvcc "
            f"(torch.version.cuda={torch.version.cuda}, nvcc={nvcc}); set CUDA_HOME or use FUSEDRNN_CUDA=0"
        )
    return bool(torch_has_cuda and nvcc)


def pip_cuda_dirs():
    """include/ and lib/ of the pip-installed CUDA libraries (nvidia/cu13, nvidia/cublas, ...).

    A toolkit without the cuBLAS/cuSPARSE headers (which ATen/cuda/CUDAContext.h includes) still builds.
    """
    includes, libs = [], []
    for site in sys.path:
        nvidia = os.path.join(site, "nvidia")
        if not os.path.isdir(nvidia):
            continue
        for pkg in sorted(os.listdir(nvidia)):
            inc, lib = os.path.join(nvidia, pkg, "include"), os.path.join(nvidia, pkg, "lib")
            if os.path.isdir(inc):
                includes.append(inc)
            if os.path.isdir(lib):
                libs.append(lib)
        break
    return includes, libs


def sources(pattern):
    return sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, pattern)))


def build_info(with_cuda):
    """What this build compiles (git revision, source digests) and against which torch and CUDA, for
    fusedrnn/_build_info.py: the import-time check and show_config() read it, and benchmark results
    name the build that produced them."""
    spec = importlib.util.spec_from_file_location("fusedrnn_sources", os.path.join(HERE, "fusedrnn", "_sources.py"))
    sources_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sources_module)
    info = sources_module.describe(HERE)
    info.update(torch=torch.__version__, torch_cuda=torch.version.cuda if with_cuda else None, with_cuda=with_cuda,
                cuda_arch_list=os.environ["TORCH_CUDA_ARCH_LIST"] if with_cuda else None)
    return info


class BuildExt(BuildExtension.with_options(use_ninja=True)):
    """build_ext that first records the build in fusedrnn/_build_info.py, in the source tree (editable and
    in-place builds) and in the build folder a wheel is made from."""

    def run(self):
        text = '"""Written by setup.py when fusedrnn was built; not in git."""\n\nBUILD = ' + repr(build_info(WITH_CUDA)) + "\n"
        folders = [os.path.join(HERE, "fusedrnn")]
        if not self.inplace and self.build_lib:
            folders.append(os.path.join(self.build_lib, "fusedrnn"))
        for folder in folders:
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, "_build_info.py"), "w") as f:
                f.write(text)
        super().run()


def extension():
    # -fopenmp: at::parallel_for is a header template whose "#pragma omp parallel" is compiled here;
    # without the flag it silently runs on one thread. Linking resolves to torch's own libgomp.so.1.
    cxx_flags = ["-O3", "-std=c++20", "-fopenmp"]
    link_flags = ["-fopenmp"]
    # core (csrc/fusedrnn) is headers only; the CUDA backend's host code is csrc/cuda/*.cpp
    common = (sources("csrc/*.cpp") + sources("csrc/sequence/*.cpp") + sources("csrc/cpu/*.cpp")
              + sources("csrc/bindings/*.cpp"))
    include_dirs = [os.path.join(HERE, "csrc")]
    if not WITH_CUDA:
        print("fusedrnn: building the CPU ops only", flush=True)
        cpu_only = [s for s in common if s != os.path.join("csrc", "bindings", "cuda.cpp")]
        return CppExtension(
            "fusedrnn._C",
            cpu_only,
            include_dirs=include_dirs,
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=link_flags,
        )
    print(f"fusedrnn: building the CPU and CUDA ops for TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']}",
          flush=True)
    cuda_includes, cuda_libs = pip_cuda_dirs()
    define = ["-DFUSEDRNN_WITH_CUDA"]
    cuda_common = [s for s in common if os.path.basename(s) != "no_cuda.cpp"]
    return CUDAExtension(
        "fusedrnn._C",
        cuda_common + sources("csrc/cuda/*.cpp") + sources("csrc/cuda/*.cu"),
        include_dirs=include_dirs + cuda_includes,
        library_dirs=cuda_libs,
        extra_link_args=link_flags,
        extra_compile_args={
            "cxx": cxx_flags + define,
            "nvcc": ["-O3", "-std=c++20", "--expt-relaxed-constexpr", "-lineinfo"] + define,
        },
    )


WITH_CUDA = want_cuda()

setup(
    # The extension loads only under the torch it was compiled against: the wheel asks for that version.
    install_requires=[f"torch=={torch.__version__.split('+')[0]}"],
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExt},
)
