"""The Philox4x32-10 engine and the element -> (block, word) map of docs/spec.md §4."""
import numpy as np
import pytest
import torch

import nspl_filler
import reference

# Published known-answer vectors of Random123 (kat_vectors, philox4x32 with 10 rounds).
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_engine_known_answers(counter, key, expected):
    assert tuple(nspl_filler._C.philox4x32_10(list(counter), list(key))) == expected


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_reference_known_answers(counter, key, expected):
    got = reference.philox4x32_10(np.array([counter], dtype=np.uint32), key)[0]
    assert tuple(int(x) for x in got) == expected


def test_engine_matches_reference_on_random_inputs():
    rng = np.random.default_rng(7)
    counters = rng.integers(0, 2**32, size=(64, 4), dtype=np.uint64).astype(np.uint32)
    keys = rng.integers(0, 2**32, size=(64, 2), dtype=np.uint64)
    for counter, key in zip(counters, keys):
        want = reference.philox4x32_10(counter[None], (int(key[0]), int(key[1])))[0]
        assert nspl_filler._C.philox4x32_10([int(c) for c in counter], [int(k) for k in key]) == [
            int(w) for w in want
        ]


@pytest.mark.parametrize("dtype,per_block", [(torch.float32, 4), (torch.float64, 2), (torch.bfloat16, 4)])
def test_blocks_consumed(dtype, per_block):
    g = nspl_filler.Generator(3)
    for numel in (1, 3, 4, 5, 17):
        before = g.offset
        nspl_filler.fill_(torch.empty(numel, 1, dtype=dtype), generator=g)
        assert g.offset - before == -(-numel // per_block)


def test_key_is_seed_low_word_first():
    # Seed 2^32 + 5 is key (5, 1): block 0 of that key must come out.
    seed = (1 << 32) + 5
    t = torch.empty(4, dtype=torch.float32)
    nspl_filler.symmetric_power_law_(t, 1.0, 1.0, 100.0, seed=seed)
    words = reference.philox4x32_10(np.zeros((1, 4), dtype=np.uint32), (5, 1))[0]
    # Stream version 2: cell m = w >> 1, u = (m + 1/2)·2^-31; log-uniform |w| = r^u.
    u = ((words >> 1).astype(np.float64) + 0.5) * 2.0**-31
    assert np.array_equal(np.signbit(t.numpy()), (words & 1).astype(bool))
    assert np.allclose(np.abs(t.numpy()), np.exp(u * np.log(100.0)), rtol=1e-6)


def test_seeds_beyond_int63_and_negative_aliases():
    a = nspl_filler.fill_(torch.empty(8, 8), seed=2**64 - 1)
    b = nspl_filler.fill_(torch.empty(8, 8), seed=-1)  # the same 64-bit key
    c = nspl_filler.fill_(torch.empty(8, 8), seed=2**63)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
