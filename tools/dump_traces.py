#!/usr/bin/python3
"""Dump per-layer post-RoPE Q, K and V of a Llama-style PyTorch model as .npy files.

The layout is what `deltaattn-eval run` reads: q float32 [n, Hq, d], k and v float32
[n, Hkv, d], C order. Projections are captured with forward hooks on the modules named
`...self_attn.q_proj`, `k_proj` and `v_proj` (Hugging Face Llama's names), and RoPE is
applied here in Hugging Face's rotate-half form, so Q and K are what attention sees.

    tools/dump_traces.py --tinylm examples/tinylm/tinylm.bin --text examples/tinylm/heldout.txt \
        --positions 512 --out traces/
    tools/dump_traces.py --hf path/to/llama --text prompt.txt --positions 1024 --out traces/ --layers 0,8

--hf needs the `transformers` package (the model loads with AutoModelForCausalLM and its
byte-level text is tokenized by its own tokenizer). Scaled RoPE variants (rope_scaling)
are refused rather than dumped wrong.
"""
import argparse
import os
import sys

import numpy as np
import torch


def rotate_half_rope(x, theta):
    """x: [n, heads, d] -> RoPE at positions 0..n-1, channel c paired with c + d/2."""
    n, _, d = x.shape
    half = d // 2
    inv_freq = 1.0 / (theta ** (torch.arange(0, half, dtype=torch.float64) / half))
    angles = torch.arange(n, dtype=torch.float64)[:, None] * inv_freq[None, :]
    angles = torch.cat([angles, angles], dim=-1)[:, None, :]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def _shape(model):
    """(head_dim, rope_theta) from a Hugging Face config or the tiny model's."""
    cfg = getattr(model, "config", None) or getattr(model, "cfg")
    if getattr(cfg, "rope_scaling", None):
        raise ValueError("rope_scaling is set: scaled RoPE variants are not supported")
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return head_dim, float(getattr(cfg, "rope_theta", 10000.0))


@torch.no_grad()
def capture(model, tokens, rope_theta=None):
    """Run tokens [1, n] through model; return [(q, k, v)] per layer as float32 numpy arrays."""
    if tokens.shape[0] != 1:
        raise ValueError("tokens: one sequence at a time ([1, n])")
    head_dim, theta = _shape(model)
    theta = rope_theta if rope_theta is not None else theta
    found = {}
    hooks = []
    for name, module in model.named_modules():
        parts = name.split(".")
        if len(parts) >= 2 and parts[-2] == "self_attn" and parts[-1] in ("q_proj", "k_proj", "v_proj"):
            def hook(_module, _inputs, output, key=(name.rsplit(".", 2)[0], parts[-1])):
                found[key] = output.detach()
            hooks.append(module.register_forward_hook(hook))
    if not hooks:
        raise ValueError("model: no modules named *.self_attn.{q,k,v}_proj")
    try:
        model(tokens)
    finally:
        for h in hooks:
            h.remove()
    layers = sorted({key[0] for key in found}, key=lambda s: [int(p) if p.isdigit() else p for p in s.split(".")])
    result = []
    for layer in layers:
        q, k, v = (found[(layer, p)][0].float() for p in ("q_proj", "k_proj", "v_proj"))
        n = q.shape[0]
        q = q.view(n, -1, head_dim)
        k = k.view(n, -1, head_dim)
        v = v.view(n, -1, head_dim)
        result.append(tuple(np.ascontiguousarray(a.numpy(), dtype="<f4")
                            for a in (rotate_half_rope(q, theta), rotate_half_rope(k, theta), v)))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--tinylm", help="a tinylm.bin weight file (examples/tinylm)")
    source.add_argument("--hf", help="a Hugging Face Llama-style model directory or id (needs transformers)")
    parser.add_argument("--text", required=True, help="UTF-8 text to run through the model")
    parser.add_argument("--positions", type=int, default=512, help="tokens to keep from the start of the text")
    parser.add_argument("--layers", default="all", help="comma-separated layer indices, or 'all'")
    parser.add_argument("--out", required=True, help="output directory")
    args = parser.parse_args()
    if args.positions < 1:
        parser.error("--positions: must be >= 1")
    with open(args.text, "rb") as f:
        text = f.read()
    if args.tinylm:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "tinylm"))
        import model as tinylm
        model = tinylm.load(args.tinylm)
        tokens = torch.tensor(list(text[:args.positions]), dtype=torch.int64)[None]
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        model = AutoModelForCausalLM.from_pretrained(args.hf, torch_dtype=torch.float32).eval()
        tokens = AutoTokenizer.from_pretrained(args.hf)(text.decode("utf-8"), return_tensors="pt").input_ids
        tokens = tokens[:, :args.positions]
    traces = capture(model, tokens)
    wanted = range(len(traces)) if args.layers == "all" else [int(i) for i in args.layers.split(",")]
    os.makedirs(args.out, exist_ok=True)
    for i in wanted:
        if not 0 <= i < len(traces):
            parser.error(f"--layers: layer {i} out of range (model has {len(traces)})")
        for name, array in zip("qkv", traces[i]):
            np.save(os.path.join(args.out, f"layer{i}_{name}.npy"), array)
        print(f"layer {i}: q {traces[i][0].shape}  k {traces[i][1].shape}  v {traces[i][2].shape}")


if __name__ == "__main__":
    main()
