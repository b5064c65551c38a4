from __future__ import annotations

import pandas as pd
import pytest

from ctloop.devtools.example_data import CATEGORICAL, NUMERIC, generate_batch, write_batches


def test_deterministic_by_seed_and_batch():
    pd.testing.assert_frame_equal(
        generate_batch(500, seed=3, batch_index=2), generate_batch(500, seed=3, batch_index=2)
    )
    assert not generate_batch(500, seed=3, batch_index=2).equals(generate_batch(500, seed=4, batch_index=2))


def test_shape_looks_like_a_business_table():
    frame = generate_batch(2000, seed=1, batch_index=5)
    assert len(NUMERIC) + len(CATEGORICAL) >= 20
    assert frame["customer_id"].is_unique
    assert frame["event_time"].dt.date.nunique() == 1
    assert 0.2 < frame["churned"].mean() < 0.5


def test_covariate_shift_moves_only_the_named_feature():
    base = generate_batch(5000, seed=1)
    shifted = generate_batch(5000, seed=1, shift={"monthly_charges": 2.0})
    assert (
        shifted["monthly_charges"].mean() - base["monthly_charges"].mean()
        > 1.5 * base["monthly_charges"].std()
    )
    pd.testing.assert_series_equal(shifted["tenure_months"], base["tenure_months"])


def test_concept_drift_changes_labels_not_features():
    base = generate_batch(5000, seed=1)
    drifted = generate_batch(5000, seed=1, concept_drift=True)
    pd.testing.assert_frame_equal(base[NUMERIC + CATEGORICAL], drifted[NUMERIC + CATEGORICAL])
    assert (base["churned"] != drifted["churned"]).mean() > 0.2


def test_unknown_shift_feature_is_named():
    with pytest.raises(ValueError, match="'region' is not a numeric feature"):
        generate_batch(10, seed=1, shift={"region": 1.0})


def test_empty_fault_writes_zero_bytes(tmp_path):
    (path,) = write_batches(tmp_path, range(1), rows=10, fault="empty")
    assert path.stat().st_size == 0
