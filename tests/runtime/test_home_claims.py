"""The thread pool's home claims (runtime/_thread_pool.h, qcc_claim_home): every unit
of a job handed out once, each thread's own run of units first, from its front, the
others' runs taken over from their back, no claim across a block or over its cap.
Threads are simulated in a chosen order (`_kernels._home_claims`); the expected
claims are worked out by hand from the rule in the header's comment."""

import itertools

import pytest

import qcc.runtime as rt

pytestmark = pytest.mark.skipif(rt.isa._conv is None, reason="qcc.runtime is not compiled")


def claims(blocks, units, width, cap, tids):
    from qcc.runtime import _kernels
    return _kernels._home_claims(blocks, units, width, cap, tids)


def covered(got, blocks, units):
    """Each unit's claim count, in the flat order (block after block)."""
    seen = [0] * (blocks * units)
    for _, b, u0, n in got:
        assert n >= 1 and 0 <= u0 and u0 + n <= units   # within one block
        for u in range(u0, u0 + n):
            seen[b * units + u] += 1
    return seen


def test_two_threads_in_turn_take_halves_from_the_front():
    # 1 block of 8 units, 2 homes [0, 4) and [4, 8); each claim half of what is left
    got = claims(1, 8, 2, 100, [0, 1, 0, 1, 0, 1, 0, 1])
    assert got == [(0, 0, 0, 2), (1, 0, 4, 2), (0, 0, 2, 1), (1, 0, 6, 1),
                   (0, 0, 3, 1), (1, 0, 7, 1)]


def test_a_thread_alone_takes_its_home_then_the_others_from_their_back():
    # thread 1 never comes: thread 0 takes [0, 4) from the front, then [4, 8) from
    # the back (half of what is left each time: 4 - 5 ... 7)
    got = claims(1, 8, 2, 100, [0] * 8)
    assert got == [(0, 0, 0, 2), (0, 0, 2, 1), (0, 0, 3, 1),
                   (0, 0, 6, 2), (0, 0, 5, 1), (0, 0, 4, 1)]


def test_claims_stay_in_one_block_and_under_the_cap():
    # 3 blocks of 5 units (15 in all), 2 homes: [0, 7) and [7, 15) in the flat order
    got = claims(3, 5, 2, 2, [0, 1] * 12)
    assert got[:4] == [(0, 0, 0, 2), (1, 1, 2, 2), (0, 0, 2, 2), (1, 1, 4, 1)]
    assert covered(got, 3, 5) == [1] * 15
    assert all(n <= 2 for *_, n in got)
    # each thread's claims: its own home only, since both kept claiming
    assert {b * 5 + u for t, b, u0, n in got if t == 0 for u in range(u0, u0 + n)} == set(range(7))


@pytest.mark.parametrize("blocks,units,width,cap", [
    (1, 1, 2, 1), (1, 3, 4, 8), (4, 7, 2, 3), (7, 2, 3, 100), (2, 523, 2, 1000),
    (60, 1, 2, 1), (5, 9, 8, 2), (3, 4, 16, 5)])
def test_every_unit_once_in_any_order_of_the_threads(blocks, units, width, cap):
    for order in itertools.islice(itertools.permutations(range(min(width, 4))), 6):
        tids = list(order) * (blocks * units + 1)
        got = claims(blocks, units, width, cap, tids)
        assert covered(got, blocks, units) == [1] * (blocks * units)
        assert claims(blocks, units, width, cap, [0] * 3) == \
            claims(blocks, units, width, cap, [0] * 3)   # a fresh job each call
    # a thread beyond the homes (16 threads, 8 homes) shares home tid % 8
    if width > 8:
        assert claims(blocks, units, width, cap, [9])[0][1:] == \
            claims(blocks, units, width, cap, [1])[0][1:]
