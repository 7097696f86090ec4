#!/usr/bin/env python3
"""Writes the seed corpora of the libFuzzer harnesses: tests/fuzz/corpus/<harness>/.

Each seed spells one chosen case in the byte layout the harness decodes (see the
comment at the top of fuzz_delta_build.cpp and fuzz_hybrid_attention.cpp, and
byte_reader / edge_float / unit_float in fuzz_support.hpp), so fuzzing starts from
every policy, the edge values, the invalid parameters and the prefill/decode
schedules instead of discovering them. Values come from a fixed-seed generator: the
output is the same on every run. Usage: python3 tests/fuzz/make_seed_corpus.py
"""
import os
import random
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


class Seed:
    """Bytes in the order the harness reads them."""

    def __init__(self):
        self.data = bytearray()

    def byte(self, b):
        self.data.append(b & 0xFF)

    def pick(self, lo, hi, value):
        # byte_reader::pick: one byte when the range has at most 256 values.
        assert lo <= value <= hi and hi - lo < 256
        self.byte(value - lo)

    def flag(self, on):
        self.byte(1 if on else 0)

    def code_bits(self, bits):
        # fuzz_quant_attention's code width byte: 1 for 8 bits, 2 for 3, 0 for 4.
        self.byte({8: 1, 3: 2, 4: 0}[bits])

    def word(self, w):
        self.data += struct.pack(">I", w & 0xFFFFFFFF)

    # edge_float (delta construction inputs)
    def grid(self, eighths):  # a value of eighths / 8, eighths in [-128, 127]
        self.byte(0)
        self.byte(eighths)

    def repeat(self):
        self.byte(150)

    def zero(self, negative=False):
        self.byte(185 if negative else 184)

    def subnormal(self, mantissa, negative=False):
        self.byte(201 if negative else 200)
        self.word(mantissa)

    def bits(self, pattern):
        self.byte(220)
        self.word(pattern)

    def huge(self, which, negative=False):
        self.byte(236 + 2 * which + (1 if negative else 0))

    def nan(self):
        self.byte(249)  # 249 % 3 == 0: NaN (only with check_finite on)

    # unit_float (attention inputs)
    def unit(self, sixty_fourths):  # a value of sixty_fourths / 64
        self.byte(0)
        self.byte(sixty_fourths)

    def unit_repeat(self):
        self.byte(200)

    def write(self, harness, name):
        folder = os.path.join(HERE, "corpus", harness)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, name), "wb") as f:
            f.write(self.data)


POLICY_FIXED, POLICY_RELATIVE, POLICY_TARGET, POLICY_BLOCK = range(4)


def delta_build_seed(rng, name, kind, dim, positions, capacity, sinks, window, keyframes, check_finite, policy_bytes,
                     breaker=1, keys=None, schedule=None, scale_byte=None):
    s = Seed()
    s.byte(kind)
    s.byte(breaker)  # not a multiple of 8: nothing broken on purpose
    s.pick(1, 96, dim)
    s.pick(0, 64, positions)
    if capacity >= positions:
        s.flag(True)
        s.pick(0, 2, capacity - positions)
    else:
        s.flag(False)
        s.pick(0, positions, capacity)
    s.pick(1, 8, sinks)
    s.pick(1, 16, window)
    s.pick(0, 9, keyframes)
    s.flag(check_finite)
    for b in policy_bytes:
        s.byte(b)
    if scale_byte is not None:
        s.byte(scale_byte)
    for row in range(positions):
        for channel in range(dim):
            (keys or default_keys)(s, rng, row, channel)
    for op, rows in schedule or [(0, 0)] * positions:
        s.byte(op)
        if op != 0:
            s.pick(1, 8, rows)
    s.write("delta_build", name)


def default_keys(s, rng, row, channel):
    # Slowly changing keys: mostly repeats, some small steps, exact threshold ties.
    r = rng.random()
    if row == 0 or r < 0.3:
        s.grid(rng.randint(-16, 16))
    else:
        s.repeat()


def edge_keys(s, rng, row, channel):
    r = rng.random()
    if r < 0.35:
        s.grid(rng.randint(-128, 127))
    elif r < 0.55:
        s.repeat()
    elif r < 0.65:
        s.zero(rng.random() < 0.5)
    elif r < 0.8:
        s.subnormal(rng.getrandbits(23), rng.random() < 0.5)
    elif r < 0.9:
        s.huge(rng.randint(0, 3), rng.random() < 0.5)
    else:
        s.bits(rng.getrandbits(32))


def write_delta_build_seeds(rng):
    # threshold_value: a byte < 200 indexes {0, -0, 1/8, 1/4, 1/2, 1, 2, 1e-45, 1e-3, 3e38, 0.1, 0.3}
    delta_build_seed(rng, "fixed_quarter_ties", POLICY_FIXED, 8, 12, 12, 1, 4, 0, False, [3])
    delta_build_seed(rng, "fixed_zero_chunks", POLICY_FIXED, 33, 20, 21, 2, 5, 3, False, [0],
                     schedule=[(1, 7), (1, 7), (1, 6)])
    delta_build_seed(rng, "relative_edges", POLICY_RELATIVE, 96, 10, 10, 1, 3, 2, False, [3], keys=edge_keys,
                     schedule=[(1, 3), (0, 0), (2, 4), (0, 0), (0, 0)])
    delta_build_seed(rng, "target_ties", POLICY_TARGET, 17, 16, 16, 3, 2, 1, False, [3], keys=lambda s, r, row, c: s.grid(r.randint(-2, 2)))
    delta_build_seed(rng, "block8_keyframes", POLICY_BLOCK, 64, 24, 24, 4, 6, 4, False, [1, 4],
                     schedule=[(2, 8), (2, 8), (1, 8)])
    delta_build_seed(rng, "block4_subnormal_theta", POLICY_BLOCK, 12, 9, 9, 1, 16, 0, False, [0, 7], keys=edge_keys)

    # check_finite on: a NaN in row 5 is rejected, the rest goes on; the capacity runs out.
    def nan_in_row_five(s, r, row, channel):
        if row == 5 and channel == 2:
            s.nan()
        else:
            default_keys(s, r, row, channel)
    delta_build_seed(rng, "nan_rejected_capacity", POLICY_FIXED, 6, 14, 10, 2, 3, 2, True, [4], keys=nan_in_row_five)

    # One broken parameter each (breaker byte % 8 == 0 selects 1 + (breaker >> 3) % 5):
    # 0 -> dim, 8 -> sinks, 16 -> window, 24 -> scale, 32 -> the policy's own parameter.
    delta_build_seed(rng, "broken_dim", POLICY_FIXED, 8, 3, 3, 1, 1, 0, False, [3], breaker=0)
    delta_build_seed(rng, "broken_sinks", POLICY_RELATIVE, 8, 3, 3, 1, 1, 0, False, [2], breaker=8)
    delta_build_seed(rng, "broken_window", POLICY_TARGET, 8, 3, 3, 1, 1, 0, False, [2], breaker=16)
    delta_build_seed(rng, "broken_scale", POLICY_FIXED, 8, 3, 3, 1, 1, 0, False, [3], breaker=24, scale_byte=0)
    delta_build_seed(rng, "broken_theta", POLICY_FIXED, 8, 3, 3, 1, 1, 0, False, [2], breaker=32)
    delta_build_seed(rng, "broken_sparsity", POLICY_TARGET, 8, 3, 3, 1, 1, 0, False, [0], breaker=32)
    delta_build_seed(rng, "broken_group", POLICY_BLOCK, 8, 3, 3, 1, 1, 0, False, [0x80 | (6 << 2), 2], breaker=32)
    delta_build_seed(rng, "group_does_not_divide", POLICY_BLOCK, 20, 3, 3, 1, 1, 0, False, [1, 2])


def attention_inputs_and_schedule(s, rng, kv_heads, group, dim, positions, prompt, prompt_chunks, tail_ops, smooth):
    """q, k, v (fill_unit_rows) then the schedule (decode_schedule), as both attention harnesses read them."""
    for heads in (kv_heads * group, kv_heads, kv_heads):  # q, then k, then v
        for p in range(positions + 1):
            for _ in range(heads * dim):
                if p == 0 or rng.random() > smooth:
                    s.unit(rng.randint(-64, 64))
                else:
                    s.unit_repeat()
    assert sum(prompt_chunks) == prompt
    for rows in prompt_chunks:
        s.pick(1, prompt, rows)
    for op in tail_ops:  # < 200: a decode step; 200 + r: a chunk of 1 + r % 4 rows
        s.byte(op)


def hybrid_seed(rng, name, kv_heads, group, dim, positions, sinks, window, keyframes, slack, policy_kind, policy_parameter,
                prompt, skipped, prompt_chunks, tail_ops, check_finite=False, scale_index=0, smooth=0.6):
    s = Seed()
    s.pick(1, 2, kv_heads)
    s.pick(1, 4, group)
    if dim <= 16:
        s.flag(True)
        s.pick(1, 16, dim)
    else:
        s.flag(False)
        s.pick(1, 64, dim)
    s.pick(1, 32, positions)
    s.pick(1, 6, sinks)
    s.pick(1, positions + 2, window)
    s.pick(0, 9, keyframes)
    s.byte(scale_index)  # {0, 0, 0, 0, 0, 0.05, 0.5, 1}
    s.flag(check_finite)
    s.pick(0, 2, slack)
    s.byte(policy_kind)
    s.byte(policy_parameter)
    s.pick(0, positions, prompt)
    s.pick(0, positions - 1, skipped)
    attention_inputs_and_schedule(s, rng, kv_heads, group, dim, positions, prompt, prompt_chunks, tail_ops, smooth)
    s.write("hybrid_attention", name)


def write_hybrid_seeds(rng):
    # policy kind % 4: fixed, relative, target, block; parameter indexes the harness's table.
    hybrid_seed(rng, "mha_fixed_decode", 1, 1, 16, 24, 1, 4, 0, 0, 0, 4, 8, 0, [8], [0] * 16)
    hybrid_seed(rng, "gqa_relative_chunks", 2, 4, 32, 30, 3, 6, 5, 1, 1, 3, 20, 7, [5, 9, 6], [0, 0, 201, 0, 0, 0, 0, 0])
    hybrid_seed(rng, "target_window_one", 1, 2, 9, 20, 2, 1, 3, 0, 2, 2, 1, 3, [1], [0] * 19)
    hybrid_seed(rng, "block16_gqa2", 2, 3, 48, 18, 4, 5, 4, 2, 3, 2, 18, 0, [4, 4, 4, 4, 2], [])
    hybrid_seed(rng, "decode_only_odd_dim", 1, 3, 13, 22, 1, 3, 2, 0, 0, 3, 0, 5, [], [0] * 22, check_finite=True)
    hybrid_seed(rng, "wide_window_scale", 2, 1, 64, 12, 5, 13, 0, 0, 1, 2, 6, 11, [6], [0] * 6, scale_index=6)


def quant_seed(rng, name, kv_heads, group, dim, positions, sinks, window, slack, bits, group32, keyframes, coded_values, value_bits,
               half, prompt, skipped, prompt_chunks, tail_ops, scale_index=0, smooth=0.6):
    s = Seed()
    s.pick(1, 2, kv_heads)
    s.pick(1, 4, group)
    s.pick(1, 8, dim // 8)
    s.pick(1, 32, positions)
    s.pick(1, 6, sinks)
    s.pick(1, positions + 2, window)
    s.byte(scale_index)  # {0, 0, 0, 0, 0, 0.05, 0.5, 1}
    s.pick(0, 2, slack)
    s.code_bits(bits)
    s.flag(group32)
    s.pick(0, 9, keyframes)
    s.flag(coded_values)
    s.code_bits(value_bits)
    s.flag(half)
    s.pick(0, positions, prompt)
    s.pick(0, positions - 1, skipped)
    attention_inputs_and_schedule(s, rng, kv_heads, group, dim, positions, prompt, prompt_chunks, tail_ops, smooth)
    s.write("quant_attention", name)


def write_quant_seeds(rng):
    quant_seed(rng, "b4_g32_decode", 1, 4, 32, 24, 2, 4, 0, 4, True, 0, True, 4, False, 8, 0, [8], [0] * 16)
    quant_seed(rng, "b8_row_chunks_f16", 2, 2, 40, 30, 1, 6, 1, 8, False, 5, True, 8, True, 20, 7, [5, 9, 6], [0, 0, 201, 0, 0, 0, 0, 0])
    quant_seed(rng, "k_only_window_one", 1, 1, 8, 20, 3, 1, 0, 4, False, 1, False, 4, False, 3, 2, [3], [0] * 17)
    quant_seed(rng, "gqa3_d64_mixed_bits", 2, 3, 64, 18, 4, 5, 2, 4, True, 3, True, 8, False, 18, 0, [4, 4, 4, 4, 2], [])
    quant_seed(rng, "capacity_full_scale", 1, 2, 16, 12, 1, 2, 0, 8, False, 0, True, 4, True, 6, 11, [6], [0] * 6, scale_index=6)
    quant_seed(rng, "b3_g32_kv_chunks", 1, 4, 64, 28, 2, 5, 0, 3, True, 4, True, 3, True, 12, 3, [6, 6], [0, 0, 0, 0, 0, 0, 0, 0])


if __name__ == "__main__":
    write_delta_build_seeds(random.Random(2024))
    write_hybrid_seeds(random.Random(7))
    write_quant_seeds(random.Random(11))
    for harness in ("delta_build", "hybrid_attention", "quant_attention"):
        folder = os.path.join(HERE, "corpus", harness)
        sizes = [os.path.getsize(os.path.join(folder, f)) for f in sorted(os.listdir(folder))]
        print(f"{harness}: {len(sizes)} seeds, {sum(sizes)} bytes")
