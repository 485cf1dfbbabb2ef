"""Rankings by error do not depend on the last bits: ties (to 6 digits) go to the smaller index."""
import numpy as np

from gradcheck_cli.numeric import Numerical
from gradcheck_cli.ranking import rank_desc, rounded
from gradcheck_cli.verdict import _judge


def test_last_bit_differences_do_not_reorder():
    score = np.array([0.5, 1.0 + 4e-16, 1.0, 2.0, 1.0 - 2e-16])
    assert list(rank_desc(score)) == [3, 1, 2, 4, 0]
    # the same scores with the tied pair's last bits exchanged: the same order
    swapped = np.array([0.5, 1.0, 1.0 + 4e-16, 2.0, 1.0 - 2e-16])
    assert list(rank_desc(swapped)) == [3, 1, 2, 4, 0]


def test_real_differences_still_rank_and_nan_inf_sort_sensibly():
    score = np.array([1.0, 1.00001, np.nan, np.inf, 0.0])
    assert list(rank_desc(score)) == [3, 1, 0, 4, 2]
    assert rounded(np.array([123456789.0]))[0] == 123457000.0


def test_rank_uses_the_given_index_for_ties():
    assert list(rank_desc(np.array([1.0, 1.0, 1.0]), np.array([7, 3, 5]))) == [1, 2, 0]


def _row_worst(a_errors):
    """A row whose analytic side is the numerical side plus ``a_errors``."""
    n = np.full(a_errors.size, 0.5)
    numer = Numerical(np.arange(a_errors.size), n, np.zeros_like(n), np.full_like(n, 1e-5),
                      np.zeros_like(n), np.zeros_like(n))
    row = _judge(0, "linear", "W", "kron", (n + a_errors).reshape(2, 3), numer, 1e-6, 1e-9)
    return [e.index for e in row.worst], row.worst_index


def test_worst_entries_of_tied_errors_are_in_index_order():
    # a mirrored bug: entries (0, 2) and (1, 0) wrong by the same amount up to the last bits
    base = np.array([0.0, 0.0, 0.3, 0.3, 0.0, 0.0])
    for tweak in (+2e-16, -2e-16):
        err = base.copy()
        err[3] += tweak
        assert err[3] != err[2]
        worst, at = _row_worst(err)
        assert worst == [(0, 2), (1, 0)], (tweak, worst)
        assert at == (0, 2)
    # a real difference still wins over the index
    err = base.copy()
    err[3] *= 1.01
    assert _row_worst(err)[0] == [(1, 0), (0, 2)]
