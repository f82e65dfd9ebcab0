"""Per-call time of small fastrnn calls, where the Python layer's share is largest: for
comparing two versions of the whole package (Python and extension), not only two builds of the
extension (that is ab_builds.py). Each process times one version; alternate them:

    git worktree add /tmp/base 102959a && cmake -S /tmp/base -B /tmp/base/build -G Ninja \
        -DFASTRNN_CUDA=OFF -DCMAKE_BUILD_TYPE=Release -Dpybind11_DIR=$(python -m pybind11 --cmakedir) \
        && cmake --build /tmp/base/build && cp /tmp/base/build/_C*.so /tmp/base/python/fastrnn/
    for i in 1 2 3 4; do python bench/call_overhead.py /tmp/base/python > base_$i.json
                         python bench/call_overhead.py > new_$i.json; done

With a package directory, that copy of fastrnn is imported instead of the installed one.
Prints one JSON line: case -> median microseconds per call."""
import json, sys, time
if len(sys.argv) > 1:
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()
                        and "editable" not in repr(f).lower()]
    sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(2)
import fastrnn.nn as fnn
import fastrnn.functional as F
assert len(sys.argv) == 1 or fnn.__file__.startswith(sys.argv[1]), fnn.__file__  # the copy asked for

def timed(fn, n=400):
    for _ in range(50): fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    ts.sort(); return ts[len(ts)//2] * 1e6

torch.manual_seed(0)
res = {}
x1 = torch.randn(1, 1, 128)
for name in ("LSTM", "GRU", "RNN"):
    m = getattr(fnn, name)(128, 128).eval()
    with torch.no_grad():
        res[f"{name} T1 B1 inference"] = timed(lambda: m(x1))
    xt = torch.randn(20, 1, 128)
    with torch.no_grad():
        res[f"{name} T20 B1 inference"] = timed(lambda: m(xt))
    m.train()
    res[f"{name} T20 B1 train step"] = timed(lambda: m(xt)[0].sum().backward(), 200)
for name in ("LSTMCell", "GRUCell", "RNNCell"):
    c = getattr(fnn, name)(128, 128)
    xb = torch.randn(1, 128)
    with torch.no_grad():
        res[f"{name} B1 inference"] = timed(lambda: c(xb))
    out = lambda: c(xb)
    res[f"{name} B1 train step"] = timed(lambda: (out()[0] if name == "LSTMCell" else out()).sum().backward(), 200)
w_ih, w_hh = torch.randn(512, 128), torch.randn(512, 128)
with torch.no_grad():
    res["F.lstm T1 B1"] = timed(lambda: F.lstm(x1, None, None, w_ih, w_hh), 2000)
conv = fnn.Conv2d(16, 32, 3, padding=1)
block = fnn.ConvReLUPool2d(16, 32, 3, padding=1)
xc = torch.randn(8, 16, 32, 32, requires_grad=True)
res["Conv2d 8x16x32x32 train step"] = timed(lambda: conv(xc).sum().backward(), 100)
res["ConvReLUPool2d 8x16x32x32 train step"] = timed(lambda: block(xc).sum().backward(), 100)
pool = fnn.MaxPool2d(2)
with torch.no_grad():
    res["MaxPool2d 8x16x32x32 inference"] = timed(lambda: pool(xc))
print(json.dumps(res))
