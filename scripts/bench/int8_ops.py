# Per-op times of the int8 linear pieces in PyTorch (2 threads), to see what the OpenMP spin
# costs: run it under different spins and compare, e.g.
#   for s in 0 1000 300000; do GOMP_SPINCOUNT=$s .cache/bench-venv/bin/python scripts/bench/int8_ops.py; done
# (0 is what OMP_WAIT_POLICY=PASSIVE gives). Columns, ms per call (median of 30): fp32 linear,
# per-row quantization (6 ops), _int_mm alone, quantize + _int_mm + rescale, FBGEMM's
# quantized::linear_dynamic, _weight_int8pack_mm. Rows: 128 and 1024 rows × MiniLM's shapes.
# Measured 2026-11-30 on the 2-vCPU AMD EPYC VM (AVX-512, VNNI): the quantization at 128 rows
# took 0.35 ms with no spin against 0.04 ms with a 1,000 spin or more.
import torch, time, torch.nn.functional as F
torch.set_num_threads(2)
torch.manual_seed(0)
def q_rows(x):
    s = x.abs().amax(1, keepdim=True).clamp_min(1e-12)/127.0
    return (x/s).round().clamp(-127,127).to(torch.int8), s
def bench(f, n=30):
    for _ in range(3): f()
    ts=[]
    for _ in range(n):
        t=time.perf_counter(); f(); ts.append(time.perf_counter()-t)
    ts.sort(); return ts[len(ts)//2]*1e3
for rows in (128, 1024):
  for (i,o) in ((384,1152),(384,384),(384,1536),(1536,384)):
    w=torch.randn(o,i)*0.05; b=torch.randn(o); x=torch.randn(rows,i)
    wq, ws = q_rows(w); wt = wq.t().contiguous(); ws1=ws.reshape(1,-1)
    xq, xs = q_rows(x)
    qw = torch.quantize_per_channel(w, ws.reshape(-1).double(), torch.zeros(o,dtype=torch.long), 0, torch.qint8)
    packed = torch.ops.quantized.linear_prepack(qw, b)
    r = {}
    r['fp32'] = bench(lambda: F.linear(x,w,b))
    r['qrows'] = bench(lambda: q_rows(x))
    r['intmm'] = bench(lambda: torch._int_mm(xq, wt))
    r['intmm_full'] = bench(lambda: (torch._int_mm(q_rows(x)[0], wt).float()*xs*ws1+b))
    r['fbgemm'] = bench(lambda: torch.ops.quantized.linear_dynamic(x, packed, True))
    r['wo'] = bench(lambda: torch._weight_int8pack_mm(x, wq, ws.reshape(-1)))
    print(rows, i, o, ' '.join(f'{k}={v:.3f}' for k,v in r.items()), flush=True)
