#!/usr/bin/env python3
"""The GPU anchor of scripts/gpu-check.sh: what a PyTorch user gets on the same GPU for the same
two-tower request, to set beside recbench's torch and candle rows. For comparison only;
recbench itself never uses Python.

usage:
  gpu_anchors.py MODEL_DIR --batches 1,64,256 --seq 64 --precisions fp16,bf16,fp32 \
      --items 100000 --top-k 10 --window 0.5,1,10,2 [--control fp16] [--device cuda]

Each timed call is one request batch end to end, as recbench's offline iteration: Hugging Face
`transformers` BertModel (attn_implementation="sdpa") in the precision, masked mean pooling and
L2 normalisation, then scoring on the device against ITEMS unit-normalised item embeddings held
there in the same precision (`torch.mm`), `torch.topk`, and the top-k ids and scores copied to
the host (which synchronises the device). Inputs: BATCH sequences of SEQ real token ids, no
padding. WINDOW is "WARMUP_S,MIN_S,MIN_CALLS,MAX_S" (the recbench scenario's [measure] values).
`--control P` times precision P a second time in the same process (the control row: one side
against itself). Prints one JSON object per line: side, precision, batch, median ms per batch
and every sample.
"""
import argparse
import json
import statistics
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--batches", default="1,64,256")
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--precisions", default="fp16,bf16,fp32")
    ap.add_argument("--items", type=int, default=100000)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--window", default="0.5,1,10,2")
    ap.add_argument("--control", default="")
    ap.add_argument("--device", default="cuda")
    a = ap.parse_args()

    import torch
    from transformers import BertModel
    import transformers

    import anchors  # beside this file

    dev = torch.device(a.device)
    warmup_s, min_s, min_calls, max_s = (float(x) for x in a.window.split(","))
    kinds = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    gen = torch.Generator().manual_seed(20241204)
    items32 = torch.nn.functional.normalize(torch.randn(a.items, 384, generator=gen), dim=-1)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def timed(call):
        # The CPU anchors' window loop (scripts/bench/anchors.py), on this window.
        return anchors.timed(call, (warmup_s, min_s, min_calls, max_s))["samples_ms"]

    runs = [(p, "eager") for p in a.precisions.split(",") if p]
    if a.control:
        runs.append((a.control, "eager-control"))
    for prec, side in runs:
        dtype = kinds[prec]
        model = BertModel.from_pretrained(a.model_dir, attn_implementation="sdpa", torch_dtype=dtype)
        model = model.to(dev).eval()
        hidden = model.config.hidden_size
        items = (items32 if hidden == 384 else torch.nn.functional.normalize(
            torch.randn(a.items, hidden, generator=gen), dim=-1)).to(dev, dtype)
        for batch in (int(b) for b in a.batches.split(",")):
            g = torch.Generator().manual_seed(20240601)
            ids = torch.randint(1000, 29000, (batch, a.seq), generator=g)
            ids[:, 0], ids[:, -1] = 101, 102  # [CLS] … [SEP]
            ids = ids.to(dev)
            mask = torch.ones_like(ids)
            types = torch.zeros_like(ids)

            def call():
                with torch.inference_mode():
                    h = model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
                    m = mask.unsqueeze(-1).to(torch.float32)
                    pooled = (h.float() * m).sum(1) / m.sum(1).clamp(min=1)
                    user = torch.nn.functional.normalize(pooled, dim=-1)
                    scores = user.to(dtype).mm(items.t())
                    top, idx = scores.topk(a.top_k, dim=-1)
                    return top.float().cpu(), idx.cpu()

            samples = timed(call)
            sync()
            print(json.dumps({
                "side": side, "precision": prec, "batch": batch, "seq": a.seq,
                "items": a.items, "top_k": a.top_k,
                "median_ms_per_batch": statistics.median(samples), "samples_ms": samples,
                "runtime": f"torch {torch.__version__}, transformers {transformers.__version__}, "
                           f"{torch.cuda.get_device_name(0) if dev.type == 'cuda' else 'cpu'}",
            }), flush=True)
        del model, items
        if dev.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    sys.exit(main())
