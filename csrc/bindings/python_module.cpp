// The private Python module fusedrnn._C. Importing it loads the library, whose static initialisers
// register the ops; its functions are the C++ side of fusedrnn.backends (diagnostics and controls) and
// the cell table fusedrnn/_cells.py reads.
#include <Python.h>
#include <torch/csrc/Exceptions.h>
#include <torch/csrc/autograd/python_variable.h>

#include <cstdint>
#include <cstring>

#include "bindings/double_backward.h"
#include "cpu/packed_weights.h"
#include "cpu/passes.h"
#include "cpu/scratch_pool.h"
#include "fusedrnn/cells.h"

#ifdef FUSEDRNN_WITH_CUDA
#include "cuda/algorithm.h"
#include "cuda/device_info.h"
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
  return PyLong_FromLong(fusedrnn::cuda::runtime_version());
#else
  return PyLong_FromLong(0);
#endif
}

// How many layer directions ran each CUDA algorithm since import (all zero without CUDA).
PyObject* cuda_algorithm_counts(PyObject*, PyObject*) {
  int64_t counts[4] = {0, 0, 0, 0};
#ifdef FUSEDRNN_WITH_CUDA
  using fusedrnn::cuda::AlgorithmCount;
  for (int i = 0; i < 4; ++i) counts[i] = fusedrnn::cuda::algorithm_count(static_cast<AlgorithmCount>(i));
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
  Py_BEGIN_ALLOW_THREADS us = fusedrnn::cuda::barrier_microseconds(static_cast<int>(iterations));
  Py_END_ALLOW_THREADS if (us < 0) {
    PyErr_SetString(PyExc_RuntimeError, "fusedrnn: the grid-barrier probe failed on this device");
    return nullptr;
  }
  return PyFloat_FromDouble(us);
#else
  Py_RETURN_NONE;
#endif
}

PyObject* cpu_isa(PyObject*, PyObject*) {
  return PyUnicode_FromString(fusedrnn::cpu::isa_name(fusedrnn::cpu::active_isa()));
}

PyObject* set_cpu_isa(PyObject*, PyObject* arg) {
  const char* name = PyUnicode_AsUTF8(arg);
  if (name == nullptr) return nullptr;
  for (Isa isa : {Isa::Default, Isa::Avx2, Isa::Avx512}) {
    if (std::strcmp(name, fusedrnn::cpu::isa_name(isa)) == 0) return PyBool_FromLong(fusedrnn::cpu::set_active_isa(isa));
  }
  PyErr_Format(PyExc_ValueError, "cpu isa must be 'default', 'avx2' or 'avx512', got '%s'", name);
  return nullptr;
}

// Counters of the CPU packed-weight cache: {"packs", "hits", "entries"}.
PyObject* cpu_weight_cache_stats(PyObject*, PyObject*) {
  const auto s = fusedrnn::cpu::panel_cache_stats();
  return Py_BuildValue("{s:L,s:L,s:L}", "packs", static_cast<long long>(s.packs), "hits",
                       static_cast<long long>(s.hits), "entries", static_cast<long long>(s.entries));
}

PyObject* clear_cpu_weight_cache(PyObject*, PyObject*) {
  fusedrnn::cpu::clear_panel_cache();
  Py_RETURN_NONE;
}

// Counters of the CPU scratch-buffer pool: {"reuses", "allocations", "idle_blocks", "idle_bytes"}.
PyObject* cpu_scratch_pool_stats(PyObject*, PyObject*) {
  const auto s = fusedrnn::cpu::scratch_pool_stats();
  return Py_BuildValue("{s:L,s:L,s:L,s:L}", "reuses", static_cast<long long>(s.reuses), "allocations",
                       static_cast<long long>(s.allocations), "idle_blocks", static_cast<long long>(s.idle_blocks),
                       "idle_bytes", static_cast<long long>(s.idle_bytes));
}

PyObject* clear_cpu_scratch_pool(PyObject*, PyObject*) {
  fusedrnn::cpu::clear_scratch_pool();
  Py_RETURN_NONE;
}

PyObject* double_backward_function = nullptr;  // set by fusedrnn/_ops.py; never released

PyObject* tensor_list(const std::vector<at::Tensor>& tensors) {  // undefined tensors become None
  PyObject* list = PyList_New(static_cast<Py_ssize_t>(tensors.size()));
  if (list == nullptr) return nullptr;
  for (size_t i = 0; i < tensors.size(); ++i) PyList_SET_ITEM(list, i, THPVariable_Wrap(tensors[i]));
  return list;
}

PyObject* ivalue_object(const c10::IValue& v) {  // a batch_sizes tensor, a nonlinearity string, or None
  if (v.isTensor()) return THPVariable_Wrap(v.toTensor());
  if (v.isString()) return PyUnicode_FromString(v.toStringRef().c_str());
  Py_RETURN_NONE;
}

// Calls the Python double-backward function: fn(cell_name, inputs, batch_sizes, reverse, nonlinearity,
// grads_out) -> a list of gradients (None where none), or None for the fused backward.
std::optional<std::vector<at::Tensor>> python_double_backward(fusedrnn::CellId cell,
                                                              const std::vector<at::Tensor>& inputs,
                                                              const c10::IValue& batch_sizes, bool reverse,
                                                              const c10::IValue& nonlinearity,
                                                              const std::vector<at::Tensor>& grads_out) {
  PyGILState_STATE gil = PyGILState_Ensure();
  const char* name = "";
  fusedrnn::visit_cell(cell, [&](auto c) { name = decltype(c)::name; });
  PyObject* result = PyObject_CallFunction(double_backward_function, "sNNONN", name, tensor_list(inputs),
                                           ivalue_object(batch_sizes), reverse ? Py_True : Py_False,
                                           ivalue_object(nonlinearity), tensor_list(grads_out));
  std::optional<std::vector<at::Tensor>> grads;
  bool ok = result != nullptr;
  if (ok && result != Py_None) {
    grads.emplace();
    for (Py_ssize_t i = 0; ok && i < PyList_Size(result); ++i) {
      PyObject* item = PyList_GetItem(result, i);
      ok = item == Py_None || THPVariable_Check(item);
      if (ok) grads->push_back(item == Py_None ? at::Tensor() : THPVariable_Unpack(item));
    }
    if (!ok) PyErr_SetString(PyExc_TypeError, "fusedrnn: the double-backward function must return tensors or None");
  }
  Py_XDECREF(result);
  if (!ok) {
    python_error error;
    error.persist();
    PyGILState_Release(gil);
    throw std::move(error);
  }
  PyGILState_Release(gil);
  return grads;
}

PyObject* set_double_backward(PyObject*, PyObject* fn) {
  if (!PyCallable_Check(fn)) {
    PyErr_SetString(PyExc_TypeError, "fusedrnn._C.set_double_backward takes a callable");
    return nullptr;
  }
  Py_INCREF(fn);
  Py_XDECREF(double_backward_function);
  double_backward_function = fn;
  fusedrnn::set_double_backward_hook(&python_double_backward);
  Py_RETURN_NONE;
}

// The traits of every cell (fusedrnn/cells.h), one dict each, in CellId order.
PyObject* cells(PyObject*, PyObject*) {
  PyObject* list = PyList_New(0);
  if (list == nullptr) return nullptr;
  bool ok = true;
  fusedrnn::for_each_cell([&](auto cell) {
    using Cell = decltype(cell);
    PyObject* traits = Py_BuildValue(
        "{s:s,s:i,s:i,s:i,s:i,s:i,s:O,s:O,s:O}", "name", Cell::name, "id", static_cast<int>(Cell::id), "gates",
        Cell::gates, "states", Cell::states, "workspace_cols", Cell::workspace_cols, "input_apart", Cell::input_apart,
        "h_feeds_through", Cell::h_feeds_through ? Py_True : Py_False, "projectable",
        Cell::projectable ? Py_True : Py_False, "takes_nonlinearity", Cell::takes_nonlinearity ? Py_True : Py_False);
    ok = ok && traits != nullptr && PyList_Append(list, traits) == 0;
    Py_XDECREF(traits);
  });
  if (!ok) {
    Py_DECREF(list);
    return nullptr;
  }
  return list;
}

PyMethodDef methods[] = {
    {"set_double_backward", set_double_backward, METH_O,
     "Installs the function that computes a differentiable gradient when backward runs with grad mode on."},
    {"cells", cells, METH_NOARGS, "The traits of every cell: name, id, gates, states, workspace_cols, ..."},
    {"built_with_cuda", built_with_cuda, METH_NOARGS, "True when the CUDA part was compiled."},
    {"cuda_runtime_version", cuda_runtime_version, METH_NOARGS, "CUDA runtime version linked, 0 without CUDA."},
    {"cuda_algorithm_counts", cuda_algorithm_counts, METH_NOARGS,
     "Layer directions run by each CUDA algorithm since import: {forward,backward}_{step,persistent}."},
    {"cuda_barrier_microseconds", cuda_barrier_microseconds, METH_O,
     "Microseconds per grid-wide barrier (cooperative launch, one block per SM) over N barriers."},
    {"cpu_isa", cpu_isa, METH_NOARGS, "Instruction set of the CPU kernels in use: 'avx512', 'avx2' or 'default'."},
    {"set_cpu_isa", set_cpu_isa, METH_O,
     "Use the CPU kernels of 'avx512', 'avx2' or 'default'; False if the CPU lacks it."},
    {"cpu_weight_cache_stats", cpu_weight_cache_stats, METH_NOARGS,
     "Packed recurrent weights of the CPU kernels: {'packs', 'hits', 'entries'} since import."},
    {"clear_cpu_weight_cache", clear_cpu_weight_cache, METH_NOARGS,
     "Drops every cached packing of recurrent weights (needed only after writes that bypass the version counter)."},
    {"cpu_scratch_pool_stats", cpu_scratch_pool_stats, METH_NOARGS,
     "Large CPU temporaries: {'reuses', 'allocations'} since import, {'idle_blocks', 'idle_bytes'} held now."},
    {"clear_cpu_scratch_pool", clear_cpu_scratch_pool, METH_NOARGS,
     "Frees the idle memory the CPU ops keep for their next call's temporaries."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", "fusedrnn native ops", -1, methods};

}  // namespace

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&module_def); }
