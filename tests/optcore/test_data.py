import numpy as np
import pytest

from optcore import DATASETS, OptcoreError, UnknownNameError, load_dataset

SMALL = {
    "moons": {"n_samples": 200},
    "circles": {"n_samples": 200},
    "blobs": {"n_samples": 200},
    "classification": {"n_samples": 200},
    "regression": {"n_samples": 200},
}
TASKS = {
    "moons": "binary",
    "circles": "binary",
    "blobs": "multiclass",
    "classification": "binary",
    "regression": "regression",
    "digits": "multiclass",
    "breast_cancer": "binary",
    "iris": "multiclass",
    "wine": "multiclass",
    "diabetes": "regression",
}


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_dataset_loads_split_and_standardised(name):
    ds = load_dataset(name, seed=3, val_fraction=0.25, **SMALL.get(name, {}))
    assert ds.task == TASKS[name]
    m = ds.X_train.shape[0] + ds.X_val.shape[0]
    assert m == DATASETS[name].size(ds.params)
    assert ds.X_val.shape[0] == pytest.approx(0.25 * m, abs=1)
    assert ds.X_train.shape[1] == ds.X_val.shape[1] == ds.n_features
    assert ds.Y_train.shape == (ds.n_train, ds.n_outputs)
    # standardised with training statistics only: exactly mean 0 / std 1 on train (or 0 for constant columns)
    assert np.allclose(ds.X_train.mean(axis=0), 0, atol=1e-12)
    assert np.all(np.isclose(ds.X_train.std(axis=0), 1) | np.isclose(ds.X_train.std(axis=0), 0))
    if ds.task == "multiclass":
        assert np.all(ds.Y_train.sum(axis=1) == 1)


def test_same_seed_same_arrays_and_fingerprint():
    a = load_dataset("moons", seed=1, n_samples=300, noise=0.3)
    b = load_dataset("moons", seed=1, n_samples=300, noise=0.3)
    c = load_dataset("moons", seed=2, n_samples=300, noise=0.3)
    assert np.array_equal(a.X_train, b.X_train) and a.fingerprint == b.fingerprint
    assert a.fingerprint != c.fingerprint
    assert len(a.fingerprint) == 16


def test_split_is_stratified():
    ds = load_dataset("classification", seed=0, n_samples=1000, n_classes=2, flip_y=0.0)
    assert ds.Y_train.mean() == pytest.approx(ds.Y_val.mean(), abs=0.01)


def test_validation_statistics_are_not_used_for_standardising():
    ds = load_dataset("diabetes", seed=0)
    assert not np.allclose(ds.X_val.mean(axis=0), 0, atol=1e-3)


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(UnknownNameError) as err:
        load_dataset("mnist")
    assert str(err.value).startswith("unknown dataset 'mnist'; valid datasets: blobs, breast_cancer, circles")


def test_unknown_parameter_lists_the_dataset_parameters():
    with pytest.raises(OptcoreError) as err:
        load_dataset("moons", n_sample=10)
    assert str(err.value) == "dataset 'moons' has no parameter 'n_sample'; its parameters: n_samples, noise"
    with pytest.raises(OptcoreError, match="bundled"):
        load_dataset("iris", noise=0.1)


def test_bad_val_fraction():
    with pytest.raises(OptcoreError, match=r"val_fraction must be in \(0, 1\); got 1.0"):
        load_dataset("iris", val_fraction=1.0)


def test_astype_casts_once():
    ds = load_dataset("iris")
    f32 = ds.astype(np.float32)
    assert f32.X_train.dtype == np.float32 and f32.fingerprint == ds.fingerprint
    assert f32.astype(np.float32) is f32


@pytest.mark.parametrize("name", ["moons", "blobs", "regression", "iris"])
def test_a_cached_split_loads_the_same_arrays_and_a_damaged_file_is_made_again(tmp_path, name):
    """The cache changes where the rows come from, not what they are: the same arrays, fingerprint and
    preprocessing, whether generated, read back, or made again after the file was damaged."""
    args = {"seed": 5, "val_fraction": 0.3, **SMALL.get(name, {})}
    plain = load_dataset(name, **args)
    first = load_dataset(name, cache_dir=tmp_path, **args)
    (kept,) = tmp_path.glob(f"{name}-*.npz")
    again = load_dataset(name, cache_dir=tmp_path, **args)
    kept.write_bytes(kept.read_bytes()[:-40] + b"\0" * 40)  # damaged: its checksum no longer holds
    remade = load_dataset(name, cache_dir=tmp_path, **args)
    for ds in (first, again, remade):
        assert ds.fingerprint == plain.fingerprint
        for k in ("X_train", "Y_train", "X_val", "Y_val"):
            np.testing.assert_array_equal(getattr(ds, k), getattr(plain, k))
        raw = np.random.default_rng(0).normal(size=(3, plain.n_features))
        np.testing.assert_array_equal(ds.preprocess.transform(raw), plain.preprocess.transform(raw))
        if plain.task != "regression":
            np.testing.assert_array_equal(ds.preprocess.classes, plain.preprocess.classes)
    assert load_dataset(name, cache_dir=tmp_path, **{**args, "seed": 6}).fingerprint != plain.fingerprint
    assert len(list(tmp_path.glob(f"{name}-*.npz"))) == 2  # one file per seed


def test_a_cached_split_loads_without_importing_scikit_learn(tmp_path):
    code = (
        "import sys, optcore; "
        f"ds = optcore.load_dataset('moons', seed=1, n_samples=300, cache_dir={str(tmp_path)!r}); "
        "print(ds.fingerprint, 'sklearn' in sys.modules)"
    )
    import subprocess
    import sys

    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True) for _ in "12"]
    (fp1, imported1), (fp2, imported2) = (r.stdout.split() for r in runs)
    assert (imported1, imported2) == ("True", "False")  # generated the first time, read back the second
    assert fp1 == fp2 == load_dataset("moons", seed=1, n_samples=300).fingerprint
