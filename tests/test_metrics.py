"""Avg/Pass/Maj@k rules (PROTOCOL section 4) on hand-computed cases, pass@k, mean/sd."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pwopsd.evaluate import problem_metrics
from pwopsd.metrics import (
    benchmark_scores,
    cluster_answers,
    majority_winner,
    mean_sd,
    problem_scores,
    unbiased_pass_at_k,
)


def test_avg_and_pass():
    m = problem_metrics(["1", "2", "1", None], "1")
    assert m["avg"] == pytest.approx(0.5)
    assert m["pass"] == 1.0
    assert m["n"] == 4 and m["n_correct"] == 2 and m["n_invalid"] == 1
    m = problem_metrics(["3", "2", None], "1")
    assert (m["avg"], m["pass"], m["maj"]) == (0.0, 0.0, 0.0)


def test_invalid_cluster_votes_and_loses():
    # INVALID has 3 votes, "1" has 2: INVALID wins and counts as wrong.
    m = problem_metrics([None, "1", None, "1", None], "1")
    assert m["maj"] == 0.0
    assert m["avg"] == pytest.approx(0.4)
    assert m["pass"] == 1.0


def test_all_invalid():
    assert problem_metrics([None, None], "7") == {
        "avg": 0.0,
        "pass": 0.0,
        "maj": 0.0,
        "n": 2,
        "n_correct": 0,
        "n_invalid": 2,
    }


def test_tie_goes_to_earliest_first_occurrence():
    # 2-2 ties: the cluster whose first member came first wins.
    assert problem_metrics(["1", None, None, "1"], "1")["maj"] == 1.0
    assert problem_metrics([None, "1", "1", None], "1")["maj"] == 0.0
    assert problem_metrics(["2", "1", "1", "2"], "1")["maj"] == 0.0
    assert problem_metrics(["1", "2", "2", "1"], "1")["maj"] == 1.0


def test_clusters_by_math_equivalence_not_strings():
    # Three spellings of 1/2 form one cluster of 3 that beats "3" (2 votes);
    # by plain string equality "3" would win 2-1.
    answers = ["3", "\\frac{1}{2}", "0.5", "3", "1/2"]
    m = problem_metrics(answers, "\\frac12")
    assert m["maj"] == 1.0
    assert m["avg"] == pytest.approx(0.6)


def test_majority_winner_returns_first_member():
    assert majority_winner([0, 1, 1, 0, -1, -1, -1]) == 4
    assert majority_winner([0, 1, 1, 0]) == 0
    with pytest.raises(ValueError):
        majority_winner([])


def _sequential_clusters(answers, equiv):
    """The rule written the obvious way, one comparison at a time."""
    reps: list[str] = []
    ids = []
    for a in answers:
        if a is None:
            ids.append(-1)
            continue
        match = next((i for i, r in enumerate(reps) if a == r or equiv(a, r) or equiv(r, a)), None)
        if match is None:
            reps.append(a)
            match = len(reps) - 1
        ids.append(match)
    return ids


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.lists(st.one_of(st.none(), st.integers(0, 30).map(str)), min_size=1, max_size=12),
        min_size=1,
        max_size=4,
    ),
    st.integers(2, 7),
)
def test_batched_clustering_matches_sequential_rule(answer_lists, modulus):
    # An asymmetric, non-transitive relation, to check the batched rounds follow the
    # sequential rule exactly and not just for nice equivalence relations.
    def equiv(a, b):
        return int(a) % modulus == int(b) % modulus and int(a) <= int(b) + modulus

    calls = []

    def batch(pairs):
        calls.append(len(pairs))
        return [equiv(a, b) for a, b in pairs]

    got = cluster_answers(answer_lists, batch)
    assert got == [_sequential_clusters(a, equiv) for a in answer_lists]


def test_problem_scores_checks_lengths():
    with pytest.raises(ValueError, match="same length"):
        problem_scores(["1"], [True, False], [0])


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (5, 2, 1, 0.4),
        (5, 2, 2, 1 - 3 / 10),  # 1 - C(3,2)/C(5,2)
        (5, 0, 3, 0.0),
        (5, 3, 3, 1.0),  # n - c < k: some correct sample is always drawn
        (12, 1, 12, 1.0),
        (12, 4, 5, 1 - math.comb(8, 5) / math.comb(12, 5)),
    ],
)
def test_unbiased_pass_at_k(n, c, k, expected):
    assert unbiased_pass_at_k(n, c, k) == pytest.approx(expected)


def test_unbiased_pass_at_k_rejects_bad_args():
    for args in [(5, 6, 1), (5, 2, 0), (5, 2, 6), (3, -1, 1)]:
        with pytest.raises(ValueError):
            unbiased_pass_at_k(*args)


def test_mean_sd_is_bessel_corrected():
    out = mean_sd([0.5, 0.7, 0.9])
    assert out["mean"] == pytest.approx(0.7)
    assert out["sd"] == pytest.approx(0.2)  # population sd would be 0.163
    assert mean_sd([0.3]) == {"mean": 0.3, "sd": None, "n": 1}
    with pytest.raises(ValueError):
        mean_sd([])


def test_benchmark_scores_mean_over_problems():
    a = problem_scores(["1", "1"], [True, True], [0, 0])
    b = problem_scores([None, "2"], [False, False], [-1, 0])
    s = benchmark_scores([a, b])
    assert s["avg"] == 0.5 and s["pass"] == 0.5 and s["maj"] == 0.5
    assert s["problems"] == 2 and s["samples"] == 4
    assert s["invalid_fraction"] == 0.25
