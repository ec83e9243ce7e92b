"""Shape and bands of the shipped results/toy/calibration.json (issue 3, "Deliver" 5)."""

from __future__ import annotations

import json

import pytest

from pwopsd.toy.calibrate import CALIBRATION_PATH, band_checks
from pwopsd.toy.models import FAMILIES


@pytest.fixture(scope="module")
def calibration() -> dict:
    if not CALIBRATION_PATH.exists():
        pytest.fail(f"{CALIBRATION_PATH} is missing; run `python -m pwopsd.toy.calibrate`")
    return json.loads(CALIBRATION_PATH.read_text())


def test_file_shape(calibration) -> None:
    assert set(calibration) == set(FAMILIES)  # top-level keys are families only
    for family, entry in calibration.items():
        assert entry["n"] == 12 and entry["set"] == "toy_aime24"
        for template in ("student", "teacher_solution", "teacher_answer"):
            for metric in ("avg", "pass", "maj"):
                assert 0.0 <= entry[template][metric] <= 1.0, (family, template, metric)
            assert entry[template]["pass"] >= entry[template]["avg"]
        assert entry["provenance"]["profile"] == "toy"
        assert entry["logprob_max_abs_diff"] < 1e-3


def test_recorded_checks_match_the_numbers(calibration) -> None:
    for entry in calibration.values():
        assert entry["checks"] == band_checks(entry)


def test_band_checks_flag_a_failing_entry() -> None:
    def m(avg: float, p: float) -> dict:
        return {"avg": avg, "pass": p, "maj": avg}

    good = {"student": m(0.4, 0.8), "teacher_solution": m(0.6, 0.9), "teacher_answer": m(0.5, 0.9)}
    assert all(band_checks(good).values())
    bad = {"student": m(0.9, 0.9), "teacher_solution": m(0.95, 1.0), "teacher_answer": m(0.8, 1.0)}
    assert not any(band_checks(bad).values())
