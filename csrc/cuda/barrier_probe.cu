// Measures the cost of one grid-wide barrier of a cooperative launch on this device, the floor of a
// persistent kernel's time step. The benchmark reports it next to the per-step times.
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include "cuda/device_info.h"

namespace {

// grid: one block per multiprocessor, block: 256 threads. counter: [1], keeps the loop from vanishing.
__global__ void barrier_probe_kernel(int iterations, int* counter) {
  cooperative_groups::grid_group grid = cooperative_groups::this_grid();
  for (int i = 0; i < iterations; ++i) grid.sync();
  if (grid.thread_rank() == 0) *counter += iterations;
}

}  // namespace

namespace fusedrnn::cuda {

double barrier_microseconds(int iterations) {
  int device = 0, sms = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return -1.0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) return -1.0;
  int* counter = nullptr;
  if (cudaMalloc(&counter, sizeof(int)) != cudaSuccess) return -1.0;
  cudaStream_t stream;
  cudaEvent_t start, stop;
  cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  auto time_launch = [&](int n) {
    void* params[] = {&n, &counter};
    float ms = -1.0f;
    cudaEventRecord(start, stream);
    cudaLaunchCooperativeKernel(reinterpret_cast<void*>(barrier_probe_kernel), dim3(sms), dim3(256), params, 0, stream);
    cudaEventRecord(stop, stream);
    if (cudaEventSynchronize(stop) == cudaSuccess) cudaEventElapsedTime(&ms, start, stop);
    return static_cast<double>(ms);
  };
  time_launch(iterations);  // warm-up
  const double empty = time_launch(0), full = time_launch(iterations);
  const bool ok = cudaGetLastError() == cudaSuccess && empty >= 0.0 && full >= 0.0;
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaStreamDestroy(stream);
  cudaFree(counter);
  return ok ? (full - empty) * 1000.0 / iterations : -1.0;
}

}  // namespace fusedrnn::cuda
