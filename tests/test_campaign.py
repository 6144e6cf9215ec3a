"""The bad-input campaign of issue #12 (bench/campaign.py): every case a clean refusal, or, for the types that
used to crash, published and verified."""

from __future__ import annotations

from bench.campaign import run_all


def test_every_bad_input_is_a_clean_refusal():
    results = run_all()
    assert len(results) >= 50
    assert [r for r in results if not r["clean"]] == []
