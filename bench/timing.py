"""Fair timing of two implementations in one process, and the machine's matmul peak.

Both sides are timed alternately (A, B, A, B, ...) after a warm-up, so drift in the machine's
speed hits them alike; each side's figure is the median of its repeats. On a GPU each call
is timed with CUDA events on the current stream.
"""

import statistics
import time

import torch


def _timer(device):
    """Returns timed(fn) -> seconds for one call of fn on this device."""
    if device == "cuda":
        def timed(fn):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
    else:
        def timed(fn):
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start
    return timed


def compare(fn_a, fn_b, device="cpu", warmup=2, min_repeats=5, max_repeats=50, budget_s=2.0, setup=None):
    """Median seconds per call of fn_a and fn_b, timed alternately.

    Repeats continue until both have run min_repeats times and budget_s has passed, or
    max_repeats. `setup` (untimed) runs before every call, e.g. to clear gradients.
    """
    timed = _timer(device)

    def call(fn):
        if setup is not None:
            setup()
        return timed(fn)

    for _ in range(warmup):
        call(fn_a)
        call(fn_b)
    times_a, times_b = [], []
    started = time.perf_counter()
    while len(times_a) < max_repeats and (len(times_a) < min_repeats or time.perf_counter() - started < budget_s):
        # Alternate which side goes first, so neither always follows the other's cache state.
        if len(times_a) % 2 == 0:
            times_a.append(call(fn_a))
            times_b.append(call(fn_b))
        else:
            times_b.append(call(fn_b))
            times_a.append(call(fn_a))
    return statistics.median(times_a), statistics.median(times_b)


def matmul_peak_gflops(device="cpu", n=None, repeats=7):
    """fp32 GFLOP/s of a large square matmul through torch: the practical ceiling here."""
    n = n or (8192 if device == "cuda" else 2048)
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    timed = _timer(device)
    if device == "cuda":
        previous = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False  # true fp32, like the kernels it is compared with
    try:
        for _ in range(2):
            a @ b
        seconds = statistics.median(timed(lambda: a @ b) for _ in range(repeats))
    finally:
        if device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = previous
    return 2 * n ** 3 / seconds / 1e9


def memory_bandwidth_gbps(device="cpu", megabytes=256, repeats=7):
    """The best GB/s of two streaming operations through torch on large tensors, counting the
    traffic memory really carries: an in-place a += b * c (three arrays read, one written) and
    a copy (one read, plus the destination read for ownership before it is written). The
    ceiling for work that streams through memory, as an optimizer step does."""
    n = megabytes * (1 << 20) // 4
    a = torch.empty(n, device=device).fill_(0.0)
    b = torch.empty(n, device=device).fill_(1.0)
    c = torch.empty(n, device=device).fill_(2.0)
    timed = _timer(device)
    best = 0.0
    for fn, arrays in ((lambda: a.addcmul_(b, c), 4), (lambda: a.copy_(b), 3)):
        for _ in range(2):
            fn()
        seconds = statistics.median(timed(fn) for _ in range(repeats))
        best = max(best, arrays * n * 4 / seconds / 1e9)
    return best


def set_tf32(enabled):
    """Lets float32 products and convolutions use TF32 tensor cores, or not, on both sides: torch
    reads torch.backends.cuda.matmul.allow_tf32 (products) and torch.backends.cudnn.allow_tf32
    (cuDNN convolutions and RNNs); fastrnn's CUDA kernels read the same two flags."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def tf32_state():
    return {"matmul": bool(torch.backends.cuda.matmul.allow_tf32), "cudnn": bool(torch.backends.cudnn.allow_tf32)}


# torch has no API that says which algorithm cuDNN chose; the names of the CUDA kernels a call
# launched (from torch.profiler) name it (e.g. sm90_xmma_fprop_implicit_gemm_tf32f32_...).
CUDNN_ALGORITHM_NOTE = ("torch exposes no cuDNN algorithm id; torch_kernels lists the CUDA kernels "
                        "torch's side launched in one profiled call, whose names show the algorithm")


def cuda_kernels(fn, limit=8):
    """Names of the CUDA kernels one call of fn launches, in order of first launch (at most limit)."""
    from torch.profiler import ProfilerActivity, profile

    try:
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
    except RuntimeError as error:  # a record, not the measurement: never worth losing the run for
        return [f"(torch.profiler failed: {error})"[:200]]
    names = []
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA and event.name not in names:
            names.append(event.name)
    return names[:limit]
