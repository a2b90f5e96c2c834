// The Python module fusedrnn._C. Importing it loads the library, whose static initialisers
// register the ops; it also tells Python how the extension was built.
#include <Python.h>

#ifdef FUSEDRNN_WITH_CUDA
extern "C" int fusedrnn_cuda_runtime_version();  // csrc/cuda/runtime_info.cu
#endif

namespace {

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

PyMethodDef methods[] = {
    {"built_with_cuda", built_with_cuda, METH_NOARGS, "True when the CUDA part was compiled."},
    {"cuda_runtime_version", cuda_runtime_version, METH_NOARGS, "CUDA runtime version linked, 0 without CUDA."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", "fusedrnn native ops", -1, methods};

}  // namespace

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&module_def); }
