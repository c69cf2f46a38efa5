"""The Model kept on disk (save/load), and the data of a final model: ``load_dataset(train_on="train+val")``."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

import optcore
from optcore import Model, OptcoreError, load_dataset


def _table(n=80, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    size, colour = rng.normal(10.0, 3.0, n), rng.choice(["red", "green", "blue"], n)
    label = np.where((size > 10) ^ (colour == "red"), "yes", "no")
    return pd.DataFrame({"size": size, "colour": colour, "weight": rng.normal(-2.0, 0.5, n), "label": label})


@pytest.fixture
def csv(tmp_path):
    path = tmp_path / "table.csv"
    _table().to_csv(path, index=False)
    return path


def _model(ds, activation="tanh"):
    net = optcore.Network.for_dataset(ds, hidden=[5], activation=activation, l2=0.1, dtype="float64")
    history = optcore.train(ds, net, optcore.make_optimizer("adam", lr=1e-2), epochs=2, batch_size=16, seed=0)
    return Model.from_training(ds, net, history.params)


def test_a_saved_model_loads_back_and_predicts_the_same(csv, tmp_path):
    ds = load_dataset(path=str(csv), seed=2)
    model = _model(ds)
    folder = model.save(tmp_path / "saved")
    assert sorted(p.name for p in folder.iterdir()) == ["network.json", "preprocess.pkl", "weights.npz"]
    config = json.loads((folder / "network.json").read_text())
    assert config == {
        "format": 1,
        "sizes": [5, 5, 1],
        "activation": "tanh",
        "task": "binary",
        "l2": 0.1,
        "init": "xavier",
        "dtype": "float64",
    }
    with np.load(folder / "weights.npz", allow_pickle=False) as weights:  # plain arrays, no pickle
        assert list(weights) == ["W_1", "b_1", "W_2", "b_2"]
        np.testing.assert_array_equal(weights["W_2"], model.params[2])
    again = Model.load(folder)
    raw = pd.read_csv(csv).drop(columns=["label"])
    np.testing.assert_array_equal(again.predict_proba(raw), model.predict_proba(raw))
    np.testing.assert_array_equal(again.predict(raw), model.predict(raw))
    assert again.network.l2 == 0.1 and again.network.activation.name == "tanh"


def test_loading_a_folder_without_a_model_names_what_is_missing(tmp_path):
    (tmp_path / "network.json").write_text("{}")
    with pytest.raises(OptcoreError, match=r"not a saved optcore model \(no weights.npz, preprocess.pkl\)"):
        Model.load(tmp_path)


def test_the_preprocessing_keeps_the_first_raw_training_rows_as_an_example(csv):
    ds = load_dataset(path=str(csv), seed=2, val_fraction=0.25)
    frame = pd.read_csv(csv)
    rows_train, _ = train_test_split(np.arange(80), test_size=0.25, random_state=2, stratify=frame["label"])
    expected = frame.drop(columns=["label"]).iloc[rows_train[:5]]
    pd.testing.assert_frame_equal(ds.preprocess.example, expected)


def test_train_on_train_and_val_trains_and_fits_the_preprocessing_on_every_row(csv):
    split = load_dataset(path=str(csv), seed=2, val_fraction=0.25)
    final = load_dataset(path=str(csv), seed=2, val_fraction=0.25, train_on="train+val")
    assert final.params["train_on"] == "train+val" and final.fingerprint == split.fingerprint  # same data
    assert final.X_train.shape == (80, 5) and final.X_val.shape == split.X_val.shape
    numeric = pd.read_csv(csv)[["size", "weight"]].to_numpy()
    frame = pd.read_csv(csv)
    rows_train, rows_val = train_test_split(np.arange(80), test_size=0.25, random_state=2, stratify=frame["label"])
    rows = np.concatenate([rows_train, rows_val])  # the training split first, then the validation split
    expected = (numeric[rows] - numeric.mean(axis=0)) / numeric.std(axis=0)  # statistics of all 80 rows
    np.testing.assert_allclose(final.X_train[:, :2], expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(final.Y_train[:, 0], frame["label"].to_numpy()[rows] == "yes")
    np.testing.assert_array_equal(final.preprocess.transform(frame.iloc[rows_val]), final.X_val)


def test_train_on_train_and_val_for_a_registry_dataset():
    final = load_dataset("wine", seed=1, val_fraction=0.3, train_on="train+val")
    from sklearn.datasets import load_wine

    X, _ = load_wine(return_X_y=True)
    assert final.X_train.shape == X.shape
    np.testing.assert_allclose(final.X_train.mean(axis=0), 0.0, atol=1e-12)  # standardised over all rows
    np.testing.assert_allclose(final.X_train.std(axis=0), 1.0, rtol=1e-12)
    with pytest.raises(OptcoreError, match=r"train_on must be one of train, train\+val; got 'all'"):
        load_dataset("wine", train_on="all")
