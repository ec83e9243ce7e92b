"""Per-seed paired differences: the Student-t interval and its text (issue 19, part 4)."""

from __future__ import annotations

import math

import pytest

from pwopsd.metrics import PairedInterval, format_interval, paired_interval

T_975 = {1: 12.706204736, 2: 4.302652730, 3: 3.182446305}  # Student t quantiles, 0.975
T_95_2 = 2.919985580  # 0.95 quantile, 2 degrees of freedom (a 90% interval)


def test_three_differences_hand_computed():
    # [1, 2, 6]: mean 3, Bessel sd sqrt(14 / 2) = sqrt(7), se sqrt(7 / 3) = 1.527525
    iv = paired_interval([1.0, 2.0, 6.0])
    half = T_975[2] * math.sqrt(7 / 3)  # 6.572411
    assert iv == PairedInterval(3.0, pytest.approx(3 - half), pytest.approx(3 + half), 3)
    assert (iv.low, iv.high) == pytest.approx((-3.572411, 9.572411), abs=1e-6)
    # the wrong choices give other numbers: df = n (3.18), ddof = 0 (sd sqrt(14/3)), z = 1.96
    assert iv.high - iv.mean != pytest.approx(T_975[3] * math.sqrt(7 / 3), abs=1e-3)
    assert iv.high - iv.mean != pytest.approx(T_975[2] * math.sqrt(14 / 3) / math.sqrt(3), abs=1e-3)
    assert iv.high - iv.mean != pytest.approx(1.959964 * math.sqrt(7 / 3), abs=1e-3)


def test_two_differences_and_another_confidence():
    # [1, 3]: mean 2, sd sqrt(2), se 1; t_{0.975, 1} = 12.706
    iv = paired_interval([1.0, 3.0])
    assert (iv.mean, iv.low, iv.high, iv.n) == pytest.approx((2.0, 2 - T_975[1], 2 + T_975[1], 2))
    ninety = paired_interval([1.0, 2.0, 6.0], confidence=0.90)
    assert ninety.high == pytest.approx(3 + T_95_2 * math.sqrt(7 / 3))


def test_one_difference_has_no_interval_and_nan_is_an_error():
    iv = paired_interval([-0.4])
    assert iv.mean == -0.4 and iv.n == 1 and math.isnan(iv.low) and math.isnan(iv.high)
    assert not iv.excludes_zero
    with pytest.raises(ValueError, match="position 1"):
        paired_interval([0.1, float("nan"), 0.2])
    with pytest.raises(ValueError, match="at least one"):
        paired_interval([])
    with pytest.raises(ValueError, match="confidence"):
        paired_interval([0.1, 0.2], confidence=1.0)


def test_excludes_zero():
    assert PairedInterval(0.1, 0.05, 0.2, 3).excludes_zero
    assert PairedInterval(-0.1, -0.2, -0.05, 3).excludes_zero
    assert not PairedInterval(0.1, -0.05, 0.2, 3).excludes_zero


def test_format_interval():
    iv = PairedInterval(-0.008, -0.031, 0.015, 3)
    assert format_interval(iv, scale=100) == "-0.8 [-3.1, +1.5] (n = 3)"
    assert format_interval(iv, scale=100, show_n=False) == "-0.8 [-3.1, +1.5]"
    assert format_interval(iv, scale=100, digits=2) == "-0.80 [-3.10, +1.50] (n = 3)"
    assert format_interval(paired_interval([0.5]), 10) == "+5.0 [no interval] (n = 1)"
    # an interval that excludes 0 never prints a bound as 0: more decimals instead
    near = PairedInterval(-0.0076, -0.0150, -0.00018, 3)
    assert format_interval(near, scale=100) == "-0.76 [-1.50, -0.02] (n = 3)"
