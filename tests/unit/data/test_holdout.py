from __future__ import annotations

import pandas as pd

from ctloop.data import holdout
from ctloop.devtools.example_data import generate_batch
from ctloop.spec.models import PipelineSpec
from tests.helpers import example_spec


def _spec(**holdout_settings) -> PipelineSpec:
    spec = example_spec("t", "data")
    spec["holdout"] = {"fraction": 0.2, "seed": 1, **holdout_settings}
    return PipelineSpec.model_validate(spec)


def test_fraction_is_respected():
    frame = generate_batch(20000, seed=1)
    _, held = holdout.split(frame, _spec())
    assert 0.18 < len(held) / len(frame) < 0.22


def test_a_row_keeps_its_side_as_data_grows():
    spec = _spec()
    first = generate_batch(3000, seed=1, batch_index=0)
    grown = pd.concat([first, generate_batch(3000, seed=1, batch_index=1)], ignore_index=True)
    _, held_first = holdout.split(first, spec)
    _, held_grown = holdout.split(grown, spec)
    assert set(held_first["customer_id"]) <= set(held_grown["customer_id"])
    assert set(held_grown["customer_id"]) & set(first["customer_id"]) == set(held_first["customer_id"])


def test_seed_changes_the_split():
    frame = generate_batch(3000, seed=1)
    assert set(holdout.split(frame, _spec(seed=1))[1]["customer_id"]) != set(
        holdout.split(frame, _spec(seed=2))[1]["customer_id"]
    )


def test_time_strategy_holds_out_the_latest_rows():
    frame = pd.concat([generate_batch(1000, seed=1, batch_index=i) for i in range(5)], ignore_index=True)
    train, held = holdout.split(frame, _spec(strategy="time"))
    assert held["event_time"].min() >= train["event_time"].max()
    assert 0.18 < len(held) / len(frame) < 0.22


def test_digest_follows_content():
    frame = generate_batch(500, seed=1)
    assert holdout.digest(frame) == holdout.digest(frame.copy())
    changed = frame.copy()
    changed.loc[0, "age"] += 1
    assert holdout.digest(changed) != holdout.digest(frame)


def test_a_stored_holdout_is_named_by_its_content_and_never_rewritten():
    from ctloop.io.readers import from_parquet_bytes
    from ctloop.io.storage import home_storage
    from ctloop.settings import load_settings

    settings = load_settings()
    frame = generate_batch(300, seed=3)
    key, sha256 = holdout.store(frame, "stored", settings)
    assert (key, sha256) == (f"holdouts/stored/{holdout.digest(frame)}.parquet", holdout.digest(frame))
    storage = home_storage(settings)
    written = storage.read_bytes(key)
    pd.testing.assert_frame_equal(from_parquet_bytes(written), frame)
    assert holdout.store(frame.copy(), "stored", settings) == (key, sha256)
    assert storage.read_bytes(key) == written
    other, _ = holdout.store(frame.head(200), "stored", settings)
    assert other != key
