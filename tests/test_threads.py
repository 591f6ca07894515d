"""Fills that share a stream from several threads take distinct blocks: a seeded Filler and an
nspl_filler.Generator reserve their blocks atomically, so no two fills repeat each other's
values and together they use exactly the blocks of as many fills made one after another."""
import threading

import torch

import nspl_filler
from nspl_filler import Generator, fill_

THREADS = 8
FILLS = 50
# 4096 blocks a fill: long enough for fills of different threads to overlap on two cores.
SIZE = 16384


def run_in_threads(fill):
    """Each of THREADS threads makes FILLS fills, all starting together; returns every result."""
    results = [[] for _ in range(THREADS)]
    start = threading.Barrier(THREADS)

    def work(k):
        start.wait()
        for _ in range(FILLS):
            results[k].append(fingerprint(fill()))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [r for rs in results for r in rs]


def fingerprint(t):
    """The first and last values of a fill: two fills from different blocks differ in both."""
    flat = t.flatten()
    return flat[0].item(), flat[-1].item()


def assert_one_fill_each(results, expected):
    got = sorted(results)
    want = sorted(fingerprint(t) for t in expected)
    assert len(set(got)) == len(got), f"{len(got) - len(set(got))} fills repeated another's blocks"
    assert got == want


def test_filler_fills_from_many_threads_take_distinct_blocks():
    param = nspl_filler.FillerParameter(type="xavier", seed=7)
    reference = nspl_filler.get_filler(param)
    expected = [reference.fill(torch.empty(SIZE, 1)) for _ in range(THREADS * FILLS)]
    for _ in range(5):
        filler = nspl_filler.get_filler(param)
        results = run_in_threads(lambda: filler.fill(torch.empty(SIZE, 1)))
        assert filler.offset == reference.offset
        assert_one_fill_each(results, expected)


def test_generator_fills_from_many_threads_take_distinct_blocks():
    expected_generator = Generator(9)
    expected = [fill_(torch.empty(SIZE, 1), generator=expected_generator) for _ in range(THREADS * FILLS)]
    g = Generator(9)
    results = run_in_threads(lambda: fill_(torch.empty(SIZE, 1), generator=g))
    assert g.get_state() == expected_generator.get_state()
    assert_one_fill_each(results, expected)
