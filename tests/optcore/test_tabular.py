"""Tables from files, loaders and OpenML into a Dataset; preprocessing fitted on training rows; the Model."""

import pickle
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

import optcore
from optcore import Model, OptcoreError, load_dataset
from optcore import preprocess as preprocess_module
from optcore.tabular import infer_task


def _frame(n=120, seed=0):
    """Two numeric columns, one categorical with a meaning for the label, and a string label."""
    rng = np.random.default_rng(seed)
    size = rng.normal(10.0, 3.0, n)
    weight = rng.normal(-2.0, 0.5, n)
    colour = rng.choice(["red", "green", "blue"], n)
    label = np.where((size > 10) ^ (colour == "red"), "yes", "no")
    return pd.DataFrame({"size": size, "colour": colour, "weight": weight, "label": label})


@pytest.fixture
def csv(tmp_path):
    path = tmp_path / "table.csv"
    _frame().to_csv(path, index=False)
    return path


def test_csv_with_a_categorical_column_is_split_scaled_and_encoded_on_the_training_rows(csv):
    ds = load_dataset(path=str(csv), seed=1, val_fraction=0.25)
    frame = pd.read_csv(csv)
    assert (ds.name, ds.task) == ("table.csv", "binary")
    assert ds.params["target"] == "label" and "2 distinct labels" in ds.params["task_inferred"]
    assert ds.X_train.dtype == np.float64 and ds.X_train.shape == (90, 5) and ds.X_val.shape == (30, 5)
    rows_train, rows_val = train_test_split(np.arange(120), test_size=0.25, random_state=1, stratify=frame["label"])
    train = frame.iloc[rows_train]
    numeric = train[["size", "weight"]].to_numpy()
    expected = (numeric - numeric.mean(axis=0)) / numeric.std(axis=0)  # the formula, training statistics only
    np.testing.assert_allclose(ds.X_train[:, :2], expected, rtol=0, atol=1e-12)
    one_hot = (train["colour"].to_numpy()[:, None] == np.array(["blue", "green", "red"])).astype(float)
    np.testing.assert_array_equal(ds.X_train[:, 2:], one_hot)
    np.testing.assert_array_equal(ds.Y_train[:, 0], train["label"].to_numpy() == "yes")
    np.testing.assert_array_equal(ds.preprocess.classes, ["no", "yes"])
    # the preprocessing object turns the raw validation rows into exactly the validation inputs
    np.testing.assert_array_equal(ds.preprocess.transform(frame.iloc[rows_val]), ds.X_val)


def test_an_unknown_category_encodes_as_zeros(csv):
    ds = load_dataset(path=str(csv))
    row = pd.DataFrame({"size": [10.0], "colour": ["purple"], "weight": [-2.0]})
    assert np.all(ds.preprocess.transform(row)[0, 2:] == 0)


def test_chunked_filling_equals_one_transform(csv, monkeypatch):
    whole = load_dataset(path=str(csv))
    monkeypatch.setattr(preprocess_module, "CHUNK_ROWS", 7)
    chunked = load_dataset(path=str(csv))
    np.testing.assert_array_equal(whole.X_train, chunked.X_train)
    np.testing.assert_array_equal(whole.X_val, chunked.X_val)


def test_csv_chunks_read_alike_whether_numeric_mixed_or_switching_midway(tmp_path, monkeypatch):
    from optcore import sources

    rng = np.random.default_rng(2)
    numeric = pd.DataFrame(rng.normal(size=(50, 3)), columns=["a", "b", "c"]).assign(y=rng.integers(0, 2, 50))
    numeric.to_csv(tmp_path / "numeric.csv", index=False)
    switching = numeric.astype({"b": object})
    switching.loc[45, "b"] = "unknown"  # a text value in a late chunk: the numeric block falls back to frames
    switching.to_csv(tmp_path / "switching.csv", index=False)
    whole = {name: load_dataset(path=str(tmp_path / f"{name}.csv")) for name in ("numeric", "switching")}
    monkeypatch.setattr(sources, "TEXT_CHUNK_ROWS", 8)
    for name, expected in whole.items():
        chunked = load_dataset(path=str(tmp_path / f"{name}.csv"))
        assert chunked.fingerprint == expected.fingerprint
        np.testing.assert_array_equal(chunked.X_train, expected.X_train)
        np.testing.assert_array_equal(chunked.Y_val, expected.Y_val)
    assert whole["switching"].n_features > whole["numeric"].n_features  # "b" became a categorical column
    table = sources.from_path(tmp_path / "numeric.csv")
    np.testing.assert_array_equal(table.features.to_numpy(), numeric[["a", "b", "c"]].to_numpy())
    np.testing.assert_array_equal(table.y, numeric["y"].to_numpy())


def test_missing_values_are_refused_naming_the_column_and_rows_or_imputed_when_asked(tmp_path):
    frame = _frame()
    frame.loc[[3, 8, 40], "weight"] = np.nan
    frame.loc[[5], "colour"] = np.nan
    path = tmp_path / "gaps.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(OptcoreError, match=r"column 'colour' has missing values in 1 rows; .*impute"):
        load_dataset(path=str(path))
    ds = load_dataset(path=str(path), impute="mean", seed=0)
    assert np.isfinite(ds.X_train).all() and np.isfinite(ds.X_val).all()
    rows_train, _ = train_test_split(np.arange(120), test_size=0.2, random_state=0, stratify=frame["label"])
    weights = frame["weight"].to_numpy()[rows_train]
    filled = np.where(np.isnan(weights), np.nanmean(weights), weights)
    np.testing.assert_allclose(ds.X_train[:, 1], (filled - filled.mean()) / filled.std(), atol=1e-12)
    # a missing category takes the most frequent training category
    gap = pd.DataFrame({"size": [1.0], "colour": [np.nan], "weight": [np.nan]})
    most = pd.Series(frame["colour"].to_numpy()[rows_train]).mode()[0]
    encoded = ds.preprocess.transform(gap)[0, 2:]
    assert encoded[["blue", "green", "red"].index(most)] == 1 and encoded.sum() == 1


def test_the_same_data_has_one_fingerprint_wherever_and_however_it_is_stored(tmp_path):
    frame = _frame()
    (tmp_path / "a").mkdir()
    frame.to_csv(tmp_path / "a" / "t.csv", index=False)
    frame.to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    prints = {load_dataset(path=str(tmp_path / p)).fingerprint for p in ("a/t.csv", "t.tsv", "t.parquet")}
    assert len(prints) == 1
    frame.loc[17, "colour"] = "blue" if frame.loc[17, "colour"] != "blue" else "red"
    frame.to_csv(tmp_path / "a" / "t.csv", index=False)
    assert load_dataset(path=str(tmp_path / "a" / "t.csv")).fingerprint not in prints


def test_npz_and_svmlight_files_hold_numeric_arrays(tmp_path):
    from sklearn.datasets import dump_svmlight_file

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 4)), rng.normal(size=60) * 3 + 1
    np.savez(tmp_path / "d.npz", X=X, y=y)
    dump_svmlight_file(X, y, str(tmp_path / "d.svmlight"))
    a, b = load_dataset(path=str(tmp_path / "d.npz")), load_dataset(path=str(tmp_path / "d.svmlight"))
    assert a.task == b.task == "regression" and a.params["task_inferred"].startswith("regression")
    np.testing.assert_allclose(a.X_train, b.X_train, atol=1e-9)  # svmlight stores ~17 significant digits
    # regression targets are standardised on the training split and decoded back to their units
    rows_train, rows_val = train_test_split(np.arange(60), test_size=0.2, random_state=0)
    np.testing.assert_allclose(a.Y_train[:, 0], (y[rows_train] - y[rows_train].mean()) / y[rows_train].std())
    np.testing.assert_allclose(a.preprocess.decode(a.Y_val), y[rows_val])
    np.savez(tmp_path / "bad.npz", data=X)
    with pytest.raises(OptcoreError, match=r"holds arrays 'X' and 'y'; this one holds: \['data'\]"):
        load_dataset(path=str(tmp_path / "bad.npz"))


def test_parquet_without_pyarrow_names_the_missing_package(tmp_path, monkeypatch):
    _frame().to_parquet(tmp_path / "t.parquet")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` fail, as when it is not installed
    monkeypatch.setitem(sys.modules, "fastparquet", None)
    with pytest.raises(OptcoreError, match="reading Parquet needs pyarrow"):
        load_dataset(path=str(tmp_path / "t.parquet"))


@pytest.mark.parametrize(
    "values, task",
    [
        (["a", "b", "a"], "binary"),
        (["a", "b", "c"], "multiclass"),
        ([0.5, 1.0, 2.0], "regression"),
        ([1.0, 3.0, 1.0], "binary"),
        ([1, 2, 3, 4], "multiclass"),
        (list(range(21)), "regression"),
        ([True, False], "binary"),
    ],
)
def test_task_inference(values, task):
    inferred, reason = infer_task(np.array(values), "t")
    assert inferred == task and reason.startswith(task) and "'t'" in reason


def _loader_arrays(n=80, shift=0.0):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(n, 3)) + shift
    return X, (X[:, 0] > shift).astype(int)


def _loader_frame():
    return _frame(), "label"


def _loader_bare_frame():
    return _frame()


def _loader_nothing():
    return 42


def _loader_fails():
    raise RuntimeError("database is down")


def test_a_loader_returns_arrays_a_frame_with_its_target_or_a_bunch():
    here = __name__
    arrays = load_dataset(loader=f"{here}:_loader_arrays", n=60, shift=1.0)
    assert arrays.task == "binary" and arrays.n_train + arrays.X_val.shape[0] == 60
    assert arrays.params["loader"] == f"{here}:_loader_arrays" and arrays.params["shift"] == 1.0
    frame = load_dataset(loader=f"{here}:_loader_frame")
    bare = load_dataset(loader=f"{here}:_loader_bare_frame", target="label")
    assert frame.fingerprint == bare.fingerprint and frame.preprocess.columns == ("size", "colour", "weight")
    bunch = load_dataset(loader="sklearn.datasets:load_iris")
    assert bunch.task == "multiclass" and bunch.preprocess.columns[0] == "sepal length (cm)"


@pytest.mark.parametrize(
    "loader, message",
    [
        ("no_colon", r"loader must be written 'package.module:function'; got 'no_colon'"),
        ("no_such_module_xyz:f", r"cannot import 'no_such_module_xyz'"),
        (f"{__name__}:absent", r"has no function 'absent'"),
        (f"{__name__}:_loader_fails", r"raised RuntimeError: database is down"),
        (f"{__name__}:_loader_nothing", r"returned int; it must return \(X, y\)"),
    ],
)
def test_a_bad_loader_is_one_error_naming_it(loader, message):
    with pytest.raises(OptcoreError, match=message):
        load_dataset(loader=loader)


def test_openml_with_an_empty_cache_offline_fails_at_once_writing_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTSWEEP_OFFLINE", "1")
    home = tmp_path / "sk_data"
    with pytest.raises(OptcoreError, match=r"OpenML dataset 'adult' is not in the cache at .*sk_data.*OFFLINE"):
        load_dataset(openml="adult", data_home=str(home))
    with pytest.raises(OptcoreError, match=r"OpenML dataset 61 is not in the cache"):
        load_dataset(openml=61, data_home=str(home))
    assert not home.exists()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"path": "x.xlsx"}, r"x.xlsx: unknown file type '.xlsx'; allowed: .csv, .tsv, .parquet, .npz"),
        ({"path": "absent.csv"}, r"absent.csv: no such file"),
        ({"path": "{csv}", "target": "price"}, r"no target column 'price'; columns: size, colour, weight, label"),
        ({"path": "{csv}", "task": "ranking"}, r"task must be one of binary, multiclass, regression; got 'ranking'"),
        ({"path": "{csv}", "task": "regression"}, r"task regression needs a numeric target; 'label' holds"),
        ({"path": "{csv}", "target": "colour", "task": "binary"}, r"task binary needs 2 distinct .* 'colour' has 3"),
        ({"path": "{csv}", "impute": "zero"}, r"impute must be one of mean, median, most_frequent; got 'zero'"),
        ({"path": "{csv}", "sep": ";"}, r"a path dataset has no parameter 'sep'; allowed: none"),
        ({"path": "{csv}", "name": "moons"}, r"exactly one dataset source of name, path, loader, openml; got name, pa"),
        ({"name": "moons", "target": "y"}, r"target applies to path, loader and openml datasets"),
        ({}, r"exactly one dataset source .*; got none"),
    ],
)
def test_bad_table_requests_are_one_error_naming_the_thing(csv, kwargs, message):
    kwargs = {k: str(csv) if v == "{csv}" else v for k, v in kwargs.items()}
    with pytest.raises(OptcoreError, match=message):
        load_dataset(**kwargs)


def test_a_class_with_one_row_and_a_missing_target_are_refused(tmp_path):
    frame = _frame()
    frame.loc[0, "label"] = "maybe"
    frame.to_csv(tmp_path / "rare.csv", index=False)
    with pytest.raises(OptcoreError, match=r"class 'maybe' of 'label' has 1 row"):
        load_dataset(path=str(tmp_path / "rare.csv"))
    frame.loc[[0, 1], "label"] = np.nan
    frame.to_csv(tmp_path / "gap.csv", index=False)
    with pytest.raises(OptcoreError, match=r"target 'label' is missing in 2 rows"):
        load_dataset(path=str(tmp_path / "gap.csv"), impute="median")


def test_the_example_csv_is_what_its_script_writes_and_loads_with_its_categories(tmp_path):
    import importlib.util

    folder = Path(__file__).parents[2] / "examples" / "data"
    spec = importlib.util.spec_from_file_location("make_csv", folder / "make_csv.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path / "again.csv")
    assert (tmp_path / "again.csv").read_bytes() == (folder / "wine_colour.csv").read_bytes()
    ds = load_dataset(path=str(folder / "wine_colour.csv"))
    assert ds.task == "multiclass" and list(ds.preprocess.classes) == ["class_0", "class_1", "class_2"]
    assert ds.n_features == 12 + 3  # twelve numeric columns, colour one-hot over pale/medium/deep


# -- the Model -------------------------------------------------------------------------------------------------
def _trained(ds, hidden=(8,)):
    net = optcore.Network.for_dataset(ds, hidden=list(hidden), dtype="float64")
    history = optcore.train(ds, net, optcore.make_optimizer("adam", lr=1e-2), epochs=3, batch_size=32, seed=0)
    return Model.from_training(ds, net, history.params)


def test_model_predicts_original_labels_from_raw_rows_through_the_same_preprocessing(csv):
    ds = load_dataset(path=str(csv), val_fraction=0.25)
    model = _trained(ds)
    raw = pd.read_csv(csv).drop(columns=["label"])
    expected = model.network.predict(model.params, ds.preprocess.transform(raw))
    proba = model.predict_proba(raw)
    np.testing.assert_array_equal(proba[:, 1:], expected)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(model.predict(raw), np.where(expected[:, 0] >= 0.5, "yes", "no"))
    # columns are read by name: another order and an extra column give the same answer; arrays by position
    shuffled = raw[["weight", "colour", "size"]].assign(note="x")
    np.testing.assert_array_equal(model.predict_proba(shuffled), proba)
    np.testing.assert_array_equal(model.predict_proba(raw.to_numpy(dtype=object)), proba)
    with pytest.raises(OptcoreError, match=r"rows have no column 'colour'; the model reads columns: size, colour"):
        model.predict(raw.drop(columns=["colour"]))
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_proba(raw), proba)


def test_model_on_a_registry_dataset_reproduces_its_standardisation_exactly():
    from sklearn.datasets import load_wine

    ds = load_dataset("wine", seed=4, val_fraction=0.3)
    X, y = load_wine(return_X_y=True)
    _, X_val, _, _ = train_test_split(X, y, test_size=0.3, random_state=4, stratify=y)
    np.testing.assert_array_equal(ds.preprocess.transform(X_val), ds.X_val)  # float64, bit for bit
    model = _trained(ds)
    np.testing.assert_array_equal(model.predict_proba(X_val), model.network.predict(model.params, ds.X_val))
    assert set(model.predict(X_val)) <= {0, 1, 2} and list(model.classes) == [0, 1, 2]


def test_regression_model_predicts_in_the_targets_units():
    ds = load_dataset("diabetes", seed=0)
    model = _trained(ds)
    from sklearn.datasets import load_diabetes

    X, _ = load_diabetes(return_X_y=True)
    out = model.network.predict(model.params, ds.preprocess.transform(X[:5]))[:, 0]
    np.testing.assert_allclose(
        model.predict(X[:5]), out * ds.preprocess.target_std + ds.preprocess.target_mean, rtol=1e-12
    )
    with pytest.raises(OptcoreError, match="predict_proba needs a classification model"):
        model.predict_proba(X[:5])
