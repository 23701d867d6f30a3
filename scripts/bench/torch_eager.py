#!/usr/bin/env python3
"""Python PyTorch eager baseline for docs/benchmarks/torch.md (the only Python in recbench).

Runs the same BERT (the shared safetensors file, Hugging Face BertModel names) the way a
PyTorch user would write it: separate Q/K/V nn.functional.linear calls, scaled_dot_product_attention
with the padding mask, exact GELU, post-LayerNorm, masked mean pooling + L2 norm, under
torch.inference_mode(). Inputs are a fixed batch of token ids with no padding (seq_len real
tokens), like recbench's offline benchmark batch. Prints every sample (ms per batch) and the median.

    python3 scripts/bench/torch_eager.py WEIGHTS.safetensors --batch 32 --seq 128 --threads 2
"""
import argparse
import json
import statistics
import struct
import time

import torch
import torch.nn.functional as F


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue  # e.g. MiniLM's I64 `embeddings.position_ids` buffer
        a, b = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[a:b]), dtype=torch.float32)
        out[name] = t.reshape(info["shape"]).clone()
    return out


def forward(w, ids, types, mask, layers, heads, eps):
    b, s = ids.shape
    h = w["embeddings.word_embeddings.weight"].shape[1]
    hd = h // heads
    x = (
        F.embedding(ids, w["embeddings.word_embeddings.weight"])
        + F.embedding(types, w["embeddings.token_type_embeddings.weight"])
        + w["embeddings.position_embeddings.weight"][:s]
    )
    x = F.layer_norm(x, (h,), w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    attend = mask.bool()[:, None, None, :]
    for i in range(layers):
        p = f"encoder.layer.{i}."

        def lin(t, n):
            return F.linear(t, w[p + n + ".weight"], w[p + n + ".bias"])

        def split(t):
            return t.view(b, s, heads, hd).transpose(1, 2)

        q = split(lin(x, "attention.self.query"))
        k = split(lin(x, "attention.self.key"))
        v = split(lin(x, "attention.self.value"))
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)
        ctx = ctx.transpose(1, 2).reshape(b, s, h)
        x = F.layer_norm(
            lin(ctx, "attention.output.dense") + x,
            (h,),
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
            eps,
        )
        inter = F.gelu(lin(x, "intermediate.dense"))
        x = F.layer_norm(
            lin(inter, "output.dense") + x,
            (h,),
            w[p + "output.LayerNorm.weight"],
            w[p + "output.LayerNorm.bias"],
            eps,
        )
    m = mask.unsqueeze(-1).float()
    mean = (x * m).sum(1) / m.sum(1).clamp(min=1)
    return F.normalize(mean, dim=-1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("weights")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--eps", type=float, default=1e-12)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=1, help="forward passes per timed sample")
    ap.add_argument("--repeats", type=int, default=20, help="timed samples")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    w = load_safetensors(args.weights)
    layers = 1 + max(int(k.split(".")[2]) for k in w if k.startswith("encoder.layer."))
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (args.batch, args.seq), generator=gen)
    ids[:, 0], ids[:, -1] = 101, 102
    types = torch.zeros_like(ids)
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        for _ in range(args.warmup):
            forward(w, ids, types, mask, layers, args.heads, args.eps)
        per_batch = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for _ in range(args.iters):
                forward(w, ids, types, mask, layers, args.heads, args.eps)
            per_batch.append((time.perf_counter() - t0) * 1000 / args.iters)
    med = statistics.median(per_batch)
    print(
        json.dumps(
            {
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "batch": args.batch,
                "seq": args.seq,
                "ms_per_batch": [round(x, 2) for x in per_batch],
                "median_ms_per_batch": round(med, 2),
                "median_ms_per_sequence": round(med / args.batch, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
