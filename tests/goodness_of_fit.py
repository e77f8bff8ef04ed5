"""Chi-square goodness of fit of integer draws to a discrete law (the exact samplers' tests)."""

import numpy as np
from scipy import stats


def chi2_pvalue(x, dist, min_expected: float = 5.0) -> float:
    """p-value of draws ``x`` under the frozen scipy discrete law ``dist``.

    One cell per value from ``x.min()`` to ``x.max()``, the law's mass beyond them added to the end cells; adjacent
    cells are then merged from the left until each expects at least ``min_expected`` draws (a remainder joins the
    last cell), so that wide laws (supports far larger than the number of draws) get binned too.
    """
    lo, hi = int(x.min()), int(x.max())
    ks = np.arange(lo, hi + 1)
    obs = np.bincount((x - lo).astype(int), minlength=ks.size).astype(float)
    exp = dist.pmf(ks) * x.size
    exp[0] += dist.cdf(lo - 1) * x.size
    exp[-1] += dist.sf(hi) * x.size
    cells_o, cells_e, acc_o, acc_e = [], [], 0.0, 0.0
    for o, e in zip(obs, exp):
        acc_o, acc_e = acc_o + o, acc_e + e
        if acc_e >= min_expected:
            cells_o.append(acc_o)
            cells_e.append(acc_e)
            acc_o, acc_e = 0.0, 0.0
    if cells_o:
        cells_o[-1] += acc_o
        cells_e[-1] += acc_e
    o, e = np.asarray(cells_o), np.asarray(cells_e)
    return stats.chisquare(o, e * o.sum() / e.sum()).pvalue
