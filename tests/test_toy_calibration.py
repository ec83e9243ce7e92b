"""Shape and bands of the shipped results/toy/calibration.json (issues 3 and 9)."""

from __future__ import annotations

import json

import pytest

from pwopsd.toy.calibrate import CALIBRATION_PATH, band_checks, band_note
from pwopsd.toy.teacher_signal import signal_checks, summarise
from pwopsd.vocab import FAMILIES


@pytest.fixture(scope="module")
def calibration() -> dict:
    if not CALIBRATION_PATH.exists():
        pytest.fail(f"{CALIBRATION_PATH} is missing; run `make calibrate`")
    return json.loads(CALIBRATION_PATH.read_text())


def test_file_shape(calibration) -> None:
    assert set(calibration) == set(FAMILIES)  # top-level keys are families only
    for family, entry in calibration.items():
        assert entry["n"] == 12 and entry["set"] == "toy_aime24"
        for template in ("student", "teacher_solution", "teacher_answer"):
            for metric in ("avg", "pass", "maj", "consistent"):
                assert 0.0 <= entry[template][metric] <= 1.0, (family, template, metric)
            assert entry[template]["pass"] >= entry[template]["avg"]
            assert entry[template]["mean_completion_tokens"] > 0
        assert entry["provenance"]["profile"] == "toy"
        assert entry["logprob_max_abs_diff"] < 1e-3


def test_recorded_checks_match_the_numbers(calibration) -> None:
    for entry in calibration.values():
        assert entry["checks"] == band_checks(entry)


def test_teacher_signal_recorded_with_its_checks(calibration) -> None:
    for family, entry in calibration.items():
        signal = entry.get("teacher_signal")
        assert signal, f"{family}: no teacher_signal; run `python -m pwopsd.toy teacher-signal`"
        assert signal["set"] == "toy_val"
        assert 0.0 <= signal["format_share"] <= 1.0
        assert 0.0 <= signal["first_wrong_teacher_wins"] <= 1.0
        assert signal["wrong_over_correct_fkl"] > 0
        assert 0 < signal["n_wrong"] < signal["n_rollouts"]
        assert signal["checks"] == signal_checks(signal)
        assert entry["note"] == band_note(entry)  # the note names every unmet band


def m(avg: float, p: float, tokens: float = 40.0) -> dict:
    return {"avg": avg, "pass": p, "maj": avg, "mean_completion_tokens": tokens}


def test_band_checks_flag_a_failing_entry() -> None:
    good = {"student": m(0.4, 0.8), "teacher_solution": m(0.6, 0.9), "teacher_answer": m(0.5, 0.9)}
    assert all(band_checks(good).values())
    bad = {
        "student": m(0.9, 0.95),
        "teacher_solution": m(0.95, 1.0),
        "teacher_answer": m(0.92, 1.0, tokens=60.0),
    }
    assert not any(band_checks(bad).values())


def _record(fkl: list[float], correct: bool, wins: bool | None = None) -> dict:
    rec = {"fkl": fkl, "format_idx": [0, len(fkl) - 1], "correct": correct, "first_wrong": None}
    if wins is not None:
        rec.update(first_wrong=1, lp_teacher=-3.0 if wins else -0.5, lp_student=-1.0)
    return rec


def test_signal_summary_and_checks() -> None:
    records = [
        _record([0.0, 0.1, 0.1, 0.0], correct=True),
        _record([0.1, 2.0, 1.0, 0.1], correct=False, wins=True),
        _record([0.1, 1.0, 0.5, 0.1], correct=False, wins=False),
    ]
    s = summarise(records)
    assert s["format_share"] == pytest.approx(0.4 / 5.1)
    assert s["first_wrong_teacher_wins"] == 0.5
    assert s["wrong_over_correct_fkl"] == pytest.approx((4.9 / 8) / (0.2 / 4))
    assert signal_checks(s) == {
        "format_share_below_0.1": True,
        "first_wrong_teacher_wins_at_least_0.8": False,
        "wrong_over_correct_fkl_at_least_2": True,
    }
    # Mass on the format positions alone fails (a).
    assert not signal_checks(summarise([_record([5.0, 0.1, 0.1, 5.0], correct=False)]))[
        "format_share_below_0.1"
    ]
