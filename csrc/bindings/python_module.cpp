// The Python module fusedrnn._C. Importing it loads the library, whose static initialisers
// register the ops; it also tells Python how the extension was built and which CPU passes run.
#include <Python.h>

#include <atomic>
#include <cstdint>
#include <cstring>

#include "cpu/passes.h"

#ifdef FUSEDRNN_WITH_CUDA
extern "C" int fusedrnn_cuda_runtime_version();  // csrc/cuda/runtime_info.cu
extern std::atomic<int64_t> fusedrnn_cuda_algorithm_counts[4];  // csrc/bindings/cuda.cpp
extern "C" double fusedrnn_cuda_barrier_microseconds(int iterations);  // csrc/cuda/barrier_probe.cu
#endif

namespace {

using fusedrnn::cpu::Isa;

PyObject* built_with_cuda(PyObject*, PyObject*) {
#ifdef FUSEDRNN_WITH_CUDA
  Py_RETURN_TRUE;
#else
  Py_RETURN_FALSE;
#endif
}

// The CUDA runtime version the CUDA part was linked against (e.g. 13000), or 0 in a CPU-only build.
PyObject* cuda_runtime_version(PyObject*, PyObject*) {
#ifdef FUSEDRNN_WITH_CUDA
  return PyLong_FromLong(fusedrnn_cuda_runtime_version());
#else
  return PyLong_FromLong(0);
#endif
}

// How many layer directions ran each CUDA algorithm since import (all zero without CUDA).
PyObject* cuda_algorithm_counts(PyObject*, PyObject*) {
  int64_t counts[4] = {0, 0, 0, 0};
#ifdef FUSEDRNN_WITH_CUDA
  for (int i = 0; i < 4; ++i) counts[i] = fusedrnn_cuda_algorithm_counts[i].load();
#endif
  return Py_BuildValue("{s:L,s:L,s:L,s:L}", "forward_step", static_cast<long long>(counts[0]), "forward_persistent",
                       static_cast<long long>(counts[1]), "backward_step", static_cast<long long>(counts[2]),
                       "backward_persistent", static_cast<long long>(counts[3]));
}

// Microseconds per grid-wide barrier of a cooperative launch on the current device (None without CUDA).
PyObject* cuda_barrier_microseconds(PyObject*, PyObject* arg) {
  const long iterations = PyLong_AsLong(arg);
  if (iterations == -1 && PyErr_Occurred()) return nullptr;
#ifdef FUSEDRNN_WITH_CUDA
  double us;
  Py_BEGIN_ALLOW_THREADS us = fusedrnn_cuda_barrier_microseconds(static_cast<int>(iterations));
  Py_END_ALLOW_THREADS if (us < 0) {
    PyErr_SetString(PyExc_RuntimeError, "fusedrnn: the grid-barrier probe failed on this device");
    return nullptr;
  }
  return PyFloat_FromDouble(us);
#else
  Py_RETURN_NONE;
#endif
}

const char* isa_name(Isa isa) { return isa == Isa::Avx2 ? "avx2" : "default"; }

PyObject* cpu_isa(PyObject*, PyObject*) { return PyUnicode_FromString(isa_name(fusedrnn::cpu::active_isa())); }

PyObject* set_cpu_isa(PyObject*, PyObject* arg) {
  const char* name = PyUnicode_AsUTF8(arg);
  if (name == nullptr) return nullptr;
  Isa isa;
  if (std::strcmp(name, "default") == 0) {
    isa = Isa::Default;
  } else if (std::strcmp(name, "avx2") == 0) {
    isa = Isa::Avx2;
  } else {
    PyErr_Format(PyExc_ValueError, "cpu isa must be 'default' or 'avx2', got '%s'", name);
    return nullptr;
  }
  return PyBool_FromLong(fusedrnn::cpu::set_active_isa(isa));
}

PyMethodDef methods[] = {
    {"built_with_cuda", built_with_cuda, METH_NOARGS, "True when the CUDA part was compiled."},
    {"cuda_runtime_version", cuda_runtime_version, METH_NOARGS, "CUDA runtime version linked, 0 without CUDA."},
    {"cuda_algorithm_counts", cuda_algorithm_counts, METH_NOARGS,
     "Layer directions run by each CUDA algorithm since import: {forward,backward}_{step,persistent}."},
    {"cuda_barrier_microseconds", cuda_barrier_microseconds, METH_O,
     "Microseconds per grid-wide barrier (cooperative launch, one block per SM) over N barriers."},
    {"cpu_isa", cpu_isa, METH_NOARGS, "Instruction set of the CPU passes in use: 'avx2' or 'default'."},
    {"set_cpu_isa", set_cpu_isa, METH_O, "Use the CPU passes of 'avx2' or 'default'; False if the CPU lacks it."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", "fusedrnn native ops", -1, methods};

}  // namespace

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&module_def); }
