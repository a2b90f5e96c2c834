// Facts about the CUDA runtime and device for fusedrnn.backends.cuda (implemented in runtime_info.cu
// and barrier_probe.cu, which include no torch headers).
#pragma once

namespace fusedrnn::cuda {

// The CUDA runtime version the CUDA part was linked against (e.g. 13000), or -1 on error.
int runtime_version();

// Microseconds per grid-wide barrier over `iterations` barriers of one cooperative launch with one
// block per multiprocessor (less the same launch with none), or a negative number on any CUDA error.
double barrier_microseconds(int iterations);

}  // namespace fusedrnn::cuda
