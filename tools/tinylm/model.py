"""A byte-level Llama-style decoder small enough to train on two CPU cores.

Module names follow Hugging Face's Llama (`model.layers[i].self_attn.q_proj`, ...), so
`tools/dump_traces.py` reads this model the way it reads a real one. RoPE is the
Hugging Face "rotate half" form: channel c pairs with channel c + head_dim/2.
"""
import math
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Config:
    vocab = 256
    d_model = 256
    n_layers = 4
    n_heads = 4
    n_kv_heads = 2
    head_dim = 64
    ffn_dim = 512
    context = 512
    rope_theta = 10000.0
    norm_eps = 1e-5

    def __init__(self, **overrides):
        for key, value in overrides.items():
            if not hasattr(Config, key):
                raise ValueError(f"unknown config field {key}")
            setattr(self, key, value)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(cfg, positions):
    """cos, sin of shape [len(positions), head_dim] in the rotate-half layout."""
    half = cfg.head_dim // 2
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, half, dtype=torch.float64) / half))
    angles = positions.to(torch.float64)[:, None] * inv_freq[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().to(torch.float32), angles.sin().to(torch.float32)


def apply_rope(x, cos, sin):
    """x: [..., n, head_dim]; cos, sin: [n, head_dim]."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.q_proj = nn.Linear(cfg.d_model, cfg.n_heads * cfg.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.d_model, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.d_model, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.d_model, bias=False)
        self.record = None  # when a list, forward appends post-RoPE (q, k, v)

    def forward(self, x, cos, sin):
        cfg = self.cfg
        b, n, _ = x.shape
        q = self.q_proj(x).view(b, n, cfg.n_heads, cfg.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, n, cfg.n_kv_heads, cfg.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, n, cfg.n_kv_heads, cfg.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.record is not None:
            self.record.append((q.detach(), k.detach(), v.detach()))
        group = cfg.n_heads // cfg.n_kv_heads
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(cfg.head_dim)
        causal = torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1)
        scores = scores.masked_fill(causal, float("-inf"))
        y = torch.softmax(scores, dim=-1) @ v
        return self.o_proj(y.transpose(1, 2).reshape(b, n, -1))


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.d_model, cfg.ffn_dim, bias=False)
        self.up_proj = nn.Linear(cfg.d_model, cfg.ffn_dim, bias=False)
        self.down_proj = nn.Linear(cfg.ffn_dim, cfg.d_model, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Backbone(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab, cfg.d_model)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)


class TinyLM(nn.Module):
    """Tied input/output embeddings: the byte table is also the output head."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.model = Backbone(cfg)
        self.apply(self._init)

    @staticmethod
    def _init(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def forward(self, tokens):
        n = tokens.shape[1]
        cos, sin = rope_tables(self.cfg, torch.arange(n))
        x = self.model.embed_tokens(tokens)
        for layer in self.model.layers:
            x = layer(x, cos, sin)
        return self.model.norm(x) @ self.model.embed_tokens.weight.T


# --- the weight file ------------------------------------------------------------------
# Little-endian. 8-byte magic "DATLM001"; eight uint32 (vocab, d_model, n_layers, n_heads,
# n_kv_heads, head_dim, ffn_dim, context); two float32 (rope_theta, norm_eps); then every
# tensor as IEEE binary16, row-major, in `tensor_order` order (Linear weights as
# PyTorch stores them: [out_features][in_features]). examples/tinylm/tinylm.hpp reads it.
MAGIC = b"DATLM001"
HEADER_FIELDS = ("vocab", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "ffn_dim", "context")


def tensor_order(cfg):
    names = ["model.embed_tokens.weight"]
    for i in range(cfg.n_layers):
        p = f"model.layers.{i}."
        names += [p + "input_layernorm.weight", p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight",
                  p + "self_attn.v_proj.weight", p + "self_attn.o_proj.weight", p + "post_attention_layernorm.weight",
                  p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight", p + "mlp.down_proj.weight"]
    return names + ["model.norm.weight"]


def save(model, path):
    cfg = model.cfg
    state = model.state_dict()
    with open(path, "wb") as f:
        f.write(MAGIC)
        f.write(struct.pack("<8I", *(getattr(cfg, k) for k in HEADER_FIELDS)))
        f.write(struct.pack("<2f", cfg.rope_theta, cfg.norm_eps))
        for name in tensor_order(cfg):
            f.write(state[name].detach().cpu().numpy().astype("<f2").tobytes())


def load(path):
    with open(path, "rb") as f:
        blob = f.read()
    if blob[:8] != MAGIC:
        raise ValueError(f"{path}: not a tinylm weight file")
    fields = struct.unpack_from("<8I", blob, 8)
    rope_theta, norm_eps = struct.unpack_from("<2f", blob, 40)
    cfg = Config(**dict(zip(HEADER_FIELDS, fields)), rope_theta=rope_theta, norm_eps=norm_eps)
    model = TinyLM(cfg)
    state = model.state_dict()
    offset = 48
    for name in tensor_order(cfg):
        count = state[name].numel()
        values = np.frombuffer(blob, dtype="<f2", count=count, offset=offset)
        state[name].copy_(torch.from_numpy(values.astype(np.float32)).view_as(state[name]))
        offset += 2 * count
    if offset != len(blob):
        raise ValueError(f"{path}: {len(blob) - offset} trailing bytes")
    return model.eval()
