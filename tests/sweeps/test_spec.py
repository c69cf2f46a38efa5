"""The spec format: the quickstart validates, defaults resolve, overrides apply, and bad specs fail clearly."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

import optcore
from sweeps.spec import HYPERPARAMETERS, Spec, SpecError, load_spec

QUICKSTART = """\
name: moons-quickstart
seed: 42
trials: 20
dataset: {name: moons, n_samples: 4000, noise: 0.25, val_fraction: 0.2}
model: {hidden: [32, 32], activation: relu, l2: 0.0}
training: {epochs: 30, objective: final_val_cost}
search:
  batch_size: {choices: [64, 128, 256, 512]}
  optimizer: {choices: [momentum, rmsprop, adam]}
  lr: {low: 1.0e-4, high: 0.1, log: true}
  beta1: {low: 0.8, high: 0.99, when: {optimizer: [momentum, adam]}}
  beta2: {low: 0.9, high: 0.9999, when: {optimizer: [rmsprop, adam]}}
  schedule: {choices: [constant, step, exponential, inverse_time, cosine, warmup_cosine]}
  decay_rate: {low: 0.01, high: 1.0, log: true, when: {schedule: [exponential, inverse_time]}}
  step_size: {low: 5, high: 20, when: {schedule: [step]}}
  gamma: {low: 0.1, high: 0.9, when: {schedule: [step]}}
  warmup_epochs: {low: 1, high: 5, when: {schedule: [warmup_cosine]}}
sampler: {name: tpe}
pruner: {name: median, warmup_epochs: 5}
"""

QUICKSTART_TOML = """\
name = "moons-quickstart"
seed = 42
trials = 20
dataset = {name = "moons", n_samples = 4000, noise = 0.25, val_fraction = 0.2}
model = {hidden = [32, 32], activation = "relu", l2 = 0.0}
training = {epochs = 30, objective = "final_val_cost"}
sampler = {name = "tpe"}
pruner = {name = "median", warmup_epochs = 5}

[search]
batch_size = {choices = [64, 128, 256, 512]}
optimizer = {choices = ["momentum", "rmsprop", "adam"]}
lr = {low = 1.0e-4, high = 0.1, log = true}
beta1 = {low = 0.8, high = 0.99, when = {optimizer = ["momentum", "adam"]}}
beta2 = {low = 0.9, high = 0.9999, when = {optimizer = ["rmsprop", "adam"]}}
schedule = {choices = ["constant", "step", "exponential", "inverse_time", "cosine", "warmup_cosine"]}
decay_rate = {low = 0.01, high = 1.0, log = true, when = {schedule = ["exponential", "inverse_time"]}}
step_size = {low = 5, high = 20, when = {schedule = ["step"]}}
gamma = {low = 0.1, high = 0.9, when = {schedule = ["step"]}}
warmup_epochs = {low = 1, high = 5, when = {schedule = ["warmup_cosine"]}}
"""

MINIMAL = """\
name: minimal
trials: 3
dataset: {name: iris}
model: {hidden: [8]}
training: {epochs: 2}
search:
  batch_size: 16
  optimizer: adam
  lr: {low: 1.0e-3, high: 0.1, log: true}
"""

BAD_SPECS = Path(__file__).parent / "bad_specs"
EXPECTED = yaml.safe_load((BAD_SPECS / "expected.yaml").read_text(encoding="utf-8"))
EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.y*ml"))


@pytest.fixture
def quickstart(tmp_path: Path) -> Path:
    path = tmp_path / "quickstart.yaml"
    path.write_text(QUICKSTART, encoding="utf-8")
    return path


def test_quickstart_validates_as_written(quickstart: Path) -> None:
    spec = load_spec(quickstart)
    assert (spec.name, spec.seed, spec.trials) == ("moons-quickstart", 42, 20)
    assert spec.dataset.params == {"n_samples": 4000, "noise": 0.25}
    assert spec.dataset.n_train == 3200
    assert spec.objectives == ["final_val_cost"] and spec.directions == ["minimize"]
    kinds = {name: entry.kind for name, entry in spec.search.items()}
    assert kinds == {
        "batch_size": "categorical",
        "optimizer": "categorical",
        "lr": "float",
        "beta1": "float",
        "beta2": "float",
        "schedule": "categorical",
        "decay_rate": "float",
        "step_size": "int",
        "gamma": "float",
        "warmup_epochs": "int",
    }
    assert spec.search["beta1"].when == {"optimizer": ["momentum", "adam"]}
    assert spec.pruner.args["warmup_epochs"] == 5


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate(example: Path) -> None:
    load_spec(example)


def test_defaults_are_resolved() -> None:
    spec = load_spec(MINIMAL)
    r = spec.resolved()
    assert r["seed"] == 0
    assert r["model"] == {"hidden": [8], "activation": "relu", "l2": 0.0, "init": "he", "dtype": "float32"}
    assert r["training"] == {
        "epochs": 2,
        "objective": "final_val_cost",
        "schedule_unit": "epoch",
        "record_minibatch": False,
        "ewa_beta": 0.9,
        "noise_scale": False,
    }
    assert r["dataset"] == {"name": "iris", "val_fraction": 0.2}
    assert r["search"]["schedule"] == {"value": "constant"}  # the default, as a fixed entry
    assert r["sampler"]["name"] == "tpe" and r["sampler"]["n_startup_trials"] == 10
    assert r["pruner"] == {"name": "none"}
    assert spec.fixed_params() == {"batch_size": 16, "optimizer": "adam", "schedule": "constant"}
    assert spec.dataset.n_train == 150 - 30


def test_generated_dataset_defaults_fill_in() -> None:
    spec = load_spec(MINIMAL.replace("{name: iris}", "{name: circles, noise: 0.05}"))
    assert spec.dataset.params == {"n_samples": 1000, "noise": 0.05, "factor": 0.5}
    assert spec.dataset.n_train == 800


def test_resolved_loads_back_to_itself(quickstart: Path) -> None:
    spec = load_spec(quickstart)
    again = load_spec(yaml.safe_dump(spec.resolved(), sort_keys=False))
    assert again.resolved() == spec.resolved()
    assert again.spec_hash() == spec.spec_hash()


def test_spec_hash_is_12_hex_and_tracks_content(quickstart: Path) -> None:
    h = load_spec(quickstart).spec_hash()
    assert len(h) == 12 and int(h, 16) >= 0
    assert load_spec(quickstart).spec_hash() == h
    assert load_spec(quickstart, ["trials=3"]).spec_hash() != h
    # Spelling a default out does not change the spec.
    assert load_spec(quickstart, ["model.init=he"]).spec_hash() == h


def test_toml_and_yaml_give_the_same_spec(tmp_path: Path, quickstart: Path) -> None:
    toml = tmp_path / "quickstart.toml"
    toml.write_text(QUICKSTART_TOML, encoding="utf-8")
    assert load_spec(toml).resolved() == load_spec(quickstart).resolved()


def test_overrides(quickstart: Path) -> None:
    spec = load_spec(
        quickstart,
        [
            "trials=3",
            "training.epochs=2",
            "search.warmup_epochs.high=1",
            "search.batch_size.choices=[64,128]",
            "dataset.noise=0.3",
            "sampler=random",
        ],
    )
    assert spec.trials == 3 and spec.training.epochs == 2
    assert spec.search["batch_size"].choices == [64, 128]
    assert spec.dataset.params["noise"] == 0.3
    assert spec.sampler.name == "random"


def test_override_of_one_form_replaces_the_others(quickstart: Path) -> None:
    spec = load_spec(quickstart, ["search.batch_size.value=128", "search.beta1.value=0.9"])
    assert spec.search["batch_size"].kind == "fixed" and spec.search["batch_size"].value == 128
    assert spec.search["beta1"].value == 0.9 and spec.search["beta1"].when == {"optimizer": ["momentum", "adam"]}
    spec = load_spec(quickstart, ["search.optimizer.value=adam", "search.optimizer.choices=[adam,momentum,gd]"])
    assert spec.search["optimizer"].choices == ["adam", "momentum", "gd"]


def test_override_adds_a_new_parameter(quickstart: Path) -> None:
    spec = load_spec(quickstart, ["search.eps.value=1e-7"])
    assert spec.search["eps"].value == 1e-7
    assert spec.fixed_params() == {"eps": 1e-7}


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("trails=3", ["trails: unknown key", "allowed keys", "(set by --set trails=3)"]),
        ("training.epochs=0", ["training.epochs", "epochs must be ≥ 1", "--set training.epochs=0"]),
        ("search.lr.scale=log", ["search.lr.scale: unknown key"]),
        ("trials", ["expected key.path=value"]),
        ("=3", ["expected key.path=value"]),
        ("name.first=x", ["name", "not a mapping"]),
        ("search.batch_size.choices=[64,", ["invalid YAML"]),
    ],
)
def test_bad_overrides(quickstart: Path, override: str, fragments: list[str]) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(quickstart, [override])
    for fragment in fragments:
        assert fragment in str(info.value)


def test_yaml_reads_exponent_floats() -> None:
    spec = load_spec(MINIMAL.replace("low: 1.0e-3", "low: 1e-3"))
    assert spec.search["lr"].low == 1e-3


def test_ranges_of_float_parameters_are_floats() -> None:
    spec = load_spec(MINIMAL.replace("optimizer: adam", "optimizer: adamw") + "  weight_decay: {low: 0, high: 1}\n")
    wd = spec.search["weight_decay"]
    assert (wd.kind, wd.low, wd.high) == ("float", 0.0, 1.0)


def test_scalar_shorthands() -> None:
    spec = load_spec(MINIMAL.replace("{name: iris}", "iris") + "  nesterov: true\nsampler: random\n")
    assert spec.dataset.name == "iris" and spec.sampler.name == "random"
    assert spec.search["nesterov"].value is True


def test_mapping_input_is_not_mutated() -> None:
    data = yaml.safe_load(MINIMAL)
    load_spec(data, ["trials=9"])
    assert data["trials"] == 3


def test_search_order_puts_conditions_first() -> None:
    text = MINIMAL + (
        "  gamma: {low: 0.1, high: 0.9, when: {step_size: [5]}}\n"
        "  step_size: {choices: [5, 10], when: {schedule: [step]}}\n"
        "  schedule: {choices: [constant, step]}\n"
    )
    order = load_spec(text).search_order()
    assert order.index("schedule") < order.index("step_size") < order.index("gamma")


def test_multi_objective() -> None:
    spec = load_spec(MINIMAL.replace("{epochs: 2}", "{epochs: 2, objective: [final_val_cost, train_seconds]}"))
    assert spec.objectives == ["final_val_cost", "train_seconds"]
    assert spec.directions == ["minimize", "minimize"]


def test_hyperband_max_resource_is_the_epoch_count(quickstart: Path) -> None:
    spec = load_spec(quickstart, ["pruner=hyperband", "training.epochs=12"])
    assert spec.pruner.args["max_resource"] == 12


def _warmup_spec(schedule: dict, warmup: dict, epochs: int) -> dict:
    return {
        "name": "w",
        "trials": 1,
        "dataset": {"name": "moons"},
        "model": {"hidden": [4]},
        "training": {"epochs": epochs},
        "search": {"batch_size": 32, "optimizer": "adam", "lr": 0.01, "schedule": schedule, "warmup_epochs": warmup},
    }


@pytest.mark.parametrize(
    ("schedule", "warmup"),
    [
        # warmup_epochs outlasts training only where no warmup schedule can come with it: nothing to refuse
        ({"choices": ["cosine", "warmup_cosine"]}, {"low": 1, "high": 5, "when": {"schedule": ["cosine"]}}),
        ({"value": "cosine"}, {"value": 10}),
        ({"choices": ["constant", "step"]}, {"low": 1, "high": 5}),
    ],
)
def test_warmup_longer_than_training_is_fine_without_a_warmup_schedule(schedule, warmup) -> None:
    assert load_spec(_warmup_spec(schedule, warmup, epochs=4)).training.epochs == 4


@pytest.mark.parametrize(
    ("schedule", "warmup", "message"),
    [
        ({"choices": ["cosine", "warmup_cosine"]}, {"low": 1, "high": 5}, "search.warmup_epochs.high: 5 is not"),
        ({"value": "warmup_step"}, {"value": 4}, "search.warmup_epochs.value: 4 is not allowed"),
        (
            {"choices": ["cosine", "warmup_cosine"]},
            {"low": 1, "high": 5, "when": {"schedule": ["warmup_cosine"]}},
            "warmup_epochs must be < training.epochs (4)",
        ),
    ],
)
def test_warmup_longer_than_training_is_refused_with_a_warmup_schedule(schedule, warmup, message) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        load_spec(_warmup_spec(schedule, warmup, epochs=4))
    assert load_spec(_warmup_spec(schedule, warmup, epochs=6)).training.epochs == 6


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "absent.yaml")
    with pytest.raises(SpecError, match="no such file"):
        load_spec(str(tmp_path / "absent.yml"))


def test_spec_error_carries_path_and_message() -> None:
    with pytest.raises(SpecError) as info:
        load_spec(MINIMAL + "  beta1: {low: 0.8, high: 1.2}\n")
    err = info.value
    assert err.path == "search.beta1.high"
    assert err.message == "1.2 is not allowed: beta1 must be in [0, 1)"
    assert str(err) == "search.beta1.high: 1.2 is not allowed: beta1 must be in [0, 1)"


def test_every_bad_spec_has_an_expectation() -> None:
    files = {p.name for p in BAD_SPECS.iterdir() if p.name != "expected.yaml"}
    assert files == set(EXPECTED)
    assert len(files) >= 25


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_spec(name: str) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(BAD_SPECS / name)
    message = str(info.value)
    assert "\n" not in message
    for fragment in EXPECTED[name]:
        assert fragment in message, f"{fragment!r} not in {message!r}"


# -- properties --------------------------------------------------------------------------------------------

positive = st.floats(min_value=1e-6, max_value=10.0, allow_nan=False)


@given(low=positive, high=positive, log=st.booleans())
def test_float_ranges_validate_exactly_when_ordered(low: float, high: float, log: bool) -> None:
    text = MINIMAL.replace(
        "{low: 1.0e-3, high: 0.1, log: true}", f"{{low: {low!r}, high: {high!r}, log: {str(log).lower()}}}"
    )
    if low <= high:
        lr = load_spec(text).search["lr"]
        assert (lr.low, lr.high, lr.log) == (low, high, log)
    else:
        with pytest.raises(SpecError, match=r"^search\.lr\.low: .* low must be ≤ high"):
            load_spec(text)


@given(beta=st.floats(min_value=-2, max_value=2, allow_nan=False))
def test_beta_domain(beta: float) -> None:
    text = MINIMAL + f"  beta2: {{value: {beta!r}}}\n"
    if 0 <= beta < 1:
        assert load_spec(text).search["beta2"].value == beta
    else:
        with pytest.raises(SpecError, match=r"^search\.beta2\.value: .* beta2 must be in \[0, 1\)$"):
            load_spec(text)


@given(name=st.text(min_size=1, max_size=12).filter(lambda s: s not in HYPERPARAMETERS))
def test_unknown_hyperparameter_names_are_errors(name: str) -> None:
    data = yaml.safe_load(MINIMAL)
    data["search"][name] = {"value": 1}
    with pytest.raises(SpecError, match="unknown hyperparameter; valid names: batch_size, optimizer, lr"):
        load_spec(data)


def test_spec_model_is_strict_about_types() -> None:
    data = yaml.safe_load(MINIMAL)
    data["model"]["l2"] = "0.1"
    with pytest.raises(SpecError, match=r"^model\.l2: '0\.1' is not allowed: l2 must be a number"):
        load_spec(data)
    assert isinstance(load_spec(MINIMAL), Spec)


# -- deleting keys, and entries an override leaves in no trial ---------------------------------------------


def test_tilde_override_deletes_a_key(quickstart: Path) -> None:
    spec = load_spec(quickstart, ["~search.beta1", "~dataset.noise", "~pruner.warmup_epochs"])
    assert "beta1" not in spec.search
    assert spec.dataset.params["noise"] == 0.2  # the dataset's default again
    assert spec.pruner.args["warmup_epochs"] == 0
    assert spec.search["beta2"].when == {"optimizer": ["rmsprop", "adam"]}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("~search.beta3", "search.beta3: not in the spec, so there is nothing to delete (set by --set ~search.beta3)"),
        ("~model.hidden.x", "model.hidden: is [32, 32], not a mapping"),
        ("~sampler.n_startup_trials", "sampler.n_startup_trials: not in the spec"),
        ("~trials=3", "--set ~trials=3: ~key.path deletes a key and takes no value"),
        (
            "~search.lr",
            "search.lr: missing; batch_size, optimizer, lr are required (give choices, low/high, or value) "
            "(set by --set ~search.lr)",
        ),
    ],
)
def test_bad_deletions(quickstart: Path, override: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(quickstart, [override])
    assert message in str(info.value)


def test_fixing_a_parameter_drops_the_entries_it_leaves_in_no_trial(quickstart: Path, caplog) -> None:
    """The quickstart's schedule children exist only for schedules a fixed `cosine` rules out: they go, with a
    note, instead of failing as conditions that can never hold."""
    with caplog.at_level("WARNING", logger="sweeps.spec"):
        spec = load_spec(quickstart, ["search.schedule.value=cosine", "search.optimizer.value=momentum"])
    assert set(spec.search) == {"batch_size", "optimizer", "lr", "beta1", "schedule"}
    assert caplog.messages == [  # in the order the search declares the entries
        "note: after --set search.optimizer.value=momentum, no trial meets the `when` of search.beta2, "
        "so it is dropped from the search",
        "note: after --set search.schedule.value=cosine, no trial meets the `when` of search.decay_rate, "
        "search.step_size, search.gamma, search.warmup_epochs, so they are dropped from the search",
    ]
    # Deleting the schedule brings back its default, constant, with the same effect.
    assert "gamma" not in load_spec(quickstart, ["~search.schedule"]).search


def test_an_entry_conditioned_on_a_dropped_entry_goes_too() -> None:
    text = MINIMAL + (
        "  schedule: {choices: [constant, step]}\n"
        "  step_size: {choices: [5, 10], when: {schedule: [step]}}\n"
        "  gamma: {low: 0.1, high: 0.9, when: {step_size: [5]}}\n"
    )
    assert {"step_size", "gamma"} <= set(load_spec(text).search)
    spec = load_spec(text, ["search.schedule.value=constant"])
    assert "step_size" not in spec.search and "gamma" not in spec.search


def test_a_required_entry_is_never_dropped() -> None:
    text = MINIMAL.replace("lr: {low: 1.0e-3, high: 0.1, log: true}", "lr: {value: 0.1, when: {optimizer: [adam]}}")
    with pytest.raises(SpecError) as info:
        load_spec(text, ["search.optimizer.value=gd"])
    assert str(info.value.errors[0]).startswith("search.lr.when: lr is needed in every trial")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        # the file states the impossible condition: a mistake, not a consequence of an override
        ([], "search.gamma.when.schedule: ['step'] is not allowed: schedule is fixed to 'constant'"),
        # an override of the condition itself is taken as meant, so it is refused rather than dropped
        (["search.schedule.value=cosine", "search.gamma.when.schedule=[step]"], "gamma never exists"),
        # a typo in the condition stays an error even when the parameter it names was overridden
        (["search.schedule.value=cosine", "search.gamma.when.schedule=[stepp]"], "schedule must be one of"),
    ],
)
def test_impossible_conditions_not_caused_by_an_override_stay_errors(overrides, message) -> None:
    text = MINIMAL + "  schedule: constant\n  gamma: {low: 0.1, high: 0.9, when: {schedule: [step]}}\n"
    with pytest.raises(SpecError, match=re.escape(message)):
        load_spec(text, overrides)


# -- every mistake at once ------------------------------------------------------------------------------------


def test_every_mistake_is_reported_at_once(quickstart: Path) -> None:
    overrides = ["trials=0", "model.hidden=[0,-1]", "search.lr.low=-1", "sampler.foo=1", "dataset.noise=-1"]
    with pytest.raises(SpecError) as info:
        load_spec(quickstart, overrides)
    paths = [e.path for e in info.value.errors]
    assert paths == [
        "trials",
        "dataset.noise",
        "model.hidden[0]",
        "model.hidden[1]",
        "search.lr.low",
        "sampler.foo",
    ]
    lines = str(info.value).splitlines()
    assert lines[0] == "6 mistakes in the spec:"
    assert lines[1] == "  trials: 0 is not allowed: trials must be in [1, 1000000] (set by --set trials=0)"
    assert len(lines) == 7
    # the group reads as its first mistake where one is expected
    assert (info.value.path, info.value.message) == ("trials", lines[1].split(": ", 1)[1])


def test_checks_across_blocks_report_every_mistake() -> None:
    text = MINIMAL.replace("{epochs: 2}", "{epochs: 2, objective: [final_val_cost, train_seconds]}").replace(
        "batch_size: 16", "batch_size: {choices: [16, 500]}"
    )
    with pytest.raises(SpecError) as info:
        load_spec(text + "sampler: cmaes\npruner: median\n")
    assert [e.path for e in info.value.errors] == ["search.batch_size.choices[1]", "sampler.name", "pruner.name"]


def test_bad_overrides_are_all_reported(quickstart: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(quickstart, ["trials", "~nope", "search.lr.choices=[0.1,"])
    assert len(info.value.errors) == 3


def test_a_long_list_of_mistakes_is_cut_short() -> None:
    data = yaml.safe_load(MINIMAL)
    data["model"]["hidden"] = [0] * 50
    with pytest.raises(SpecError) as info:
        load_spec(data)
    lines = str(info.value).splitlines()
    assert len(info.value.errors) == 50 and lines[0] == "50 mistakes in the spec:"
    assert len(lines) == 22 and lines[-1] == "  … and 30 more"


# -- bounds: hostile and absurd specs -------------------------------------------------------------------------


def _bomb(levels: int) -> list:
    value: list = ["lol"] * 9
    for _ in range(levels):
        value = [value] * 9  # shared, as YAML aliases are: 9**levels leaves in a few hundred bytes
    return value


def test_show_never_walks_more_than_it_prints() -> None:
    from sweeps.spec.errors import _show

    text = _show(_bomb(30))  # 9**31 leaves: walking them all would never finish
    assert len(text) == 60 and text.startswith("[[[[") and text.endswith("...")
    loop: list = []
    loop.append(loop)
    assert "..." in _show(loop)
    assert _show({"a": [1, "x"]}) == "{'a': [1, 'x']}"


def test_a_huge_value_given_as_data_gets_a_short_message() -> None:
    data = yaml.safe_load(MINIMAL)
    data["search"]["schedule"] = {"choices": _bomb(30)}
    data["name"] = _bomb(30)
    with pytest.raises(SpecError) as info:
        load_spec(data)
    assert info.value.errors[0].path == "name"
    assert all(len(str(e)) < 300 for e in info.value.errors)


def test_yaml_aliases_that_expand_too_far_are_refused() -> None:
    levels = "\n".join(f"  - &l{i} [*l{i - 1}, *l{i - 1}, *l{i - 1}, *l{i - 1}]" for i in range(1, 12))
    with pytest.raises(SpecError, match="line 11: too large: this value expands to more than 100,000 values"):
        load_spec(f"name: x\nbomb:\n  - &l0 [a, b, c, d]\n{levels}\n")
    with pytest.raises(SpecError, match="an alias refers to a value that contains it"):
        load_spec("name: x\nloop: &a [*a]\n")
    small = "\n".join(f"  - &l{i} [*l{i - 1}, *l{i - 1}]" for i in range(1, 4))  # aliases within reason are fine
    with pytest.raises(SpecError, match="bomb: unknown key"):
        load_spec(MINIMAL + f"bomb:\n  - &l0 [a, b]\n{small}\n")


def test_oversized_text_is_refused() -> None:
    with pytest.raises(SpecError, match="spec text: too large: a spec is at most 64 KiB"):
        load_spec(MINIMAL + "".join(f"# padding {i}\n" for i in range(10_000)))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trials=1000001", "trials: 1000001 is not allowed: trials must be in [1, 1000000]"),
        ("dataset.n_samples=10000000000", "dataset.n_samples: 10000000000 is not allowed: the moons dataset would"),
        ("model.hidden=[100000000]", "model.hidden: [100000000] is not allowed: the network would take"),
        ("model.hidden=[100000,100000,100000]", "20,000,600,001 parameters"),
    ],
)
def test_absurd_sizes_are_refused(quickstart: Path, override: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(quickstart, [override])
    assert len(info.value.errors) == 1
    assert message in str(info.value)


def test_memory_estimate_follows_its_formula(quickstart: Path) -> None:
    """The network check refuses exactly when P·s·4 + rows·Σwidths·s·2 exceeds the machine's memory."""
    from sweeps.spec.limits import machine_memory

    limit, _ = machine_memory()

    # widths [2, h, 1]: P = 3h + h + 1; rows = max(n_val 800, batch 512) = 800; float64: s = 8
    def need(h: int) -> int:
        return (4 * h + 1) * 8 * 4 + 800 * (h + 1) * 8 * 2

    h = next(h for h in (10**k for k in range(3, 12)) if need(h) > limit)
    fits = max(1, int((limit - 800 * 8 * 2 - 32) / (4 * 8 * 4 + 800 * 8 * 2)) - 1)
    assert need(fits) <= limit < need(h)
    load_spec(quickstart, [f"model.hidden=[{fits}]", "model.dtype=float64"])
    with pytest.raises(SpecError, match=r"^model\.hidden: "):
        load_spec(quickstart, [f"model.hidden=[{h}]", "model.dtype=float64"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("sampler.n_ei_candidates=1000000000000", "sampler.n_ei_candidates: 1000000000000 is not allowed"),
        ("sampler={name: nsga2, population_size: 1000000000}", "population_size must be in [2, 100000]"),
        ("dataset={name: blobs, n_classes: 1000000000000}", "dataset.n_classes: 1000000000000 is not allowed"),
    ],
)
def test_other_absurd_sizes_are_refused(quickstart: Path, override: str, message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        load_spec(quickstart, [override])


def test_an_unknown_key_does_not_hide_the_blocks_other_mistakes(quickstart: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(quickstart, ["~trials", "trails=3", "search.lr.low=-1", "model.hiden=[3]"])
    messages = [str(e) for e in info.value.errors]
    assert [e.path for e in info.value.errors] == ["trails", "model.hiden", "search.lr.low"]
    # the typo of a required key is named as such, not also reported as a missing key
    assert messages[0].startswith("trails: unknown key (did you mean 'trials'?); allowed keys: name, seed, trials")
    assert messages[1].startswith("model.hiden: unknown key; allowed keys: hidden")  # hidden is there already


def test_an_override_value_is_bounded_like_a_file() -> None:
    levels = ", ".join(f"&l{i} [*l{i - 1}, *l{i - 1}, *l{i - 1}, *l{i - 1}]" for i in range(1, 12))
    with pytest.raises(SpecError, match=r"^--set search\.schedule\.choices=.*: too large: this value expands"):
        load_spec(MINIMAL, [f"search.schedule.choices=[&l0 [a, b, c, d], {levels}]"])
    with pytest.raises(SpecError) as info:
        load_spec(MINIMAL, [f"search.schedule.choices=[&l0 [a, b, c, d], {levels}]"])
    assert len(str(info.value)) < 250  # the override is named, cut short


@pytest.mark.parametrize(
    ("search", "message"),
    [
        (  # rmsprop takes no beta1: the sampler would model a value the trial drops
            "  optimizer: {choices: [rmsprop, adam]}\n  beta1: {low: 0.8, high: 0.99}\n",
            "search.beta1: beta1 is searched in trials with optimizer rmsprop, which does not take it (the trial "
            "would drop it while the sampler still models it); add `when: {optimizer: [adam]}` to beta1",
        ),
        (
            "  optimizer: rmsprop\n  nesterov: {choices: [true, false]}\n",
            "search.nesterov: nesterov is searched in trials with optimizer rmsprop, which does not take it (the "
            "trial would drop it while the sampler still models it); remove nesterov, or add one of the optimizers "
            "that take it (momentum) to optimizer",
        ),
        (  # a condition on another entry narrows nothing about the optimizer
            "  optimizer: {choices: [gd, momentum]}\n  nesterov: {choices: [true, false]}\n"
            "  beta1: {low: 0.5, high: 0.9, when: {nesterov: [true]}}\n",
            "beta1 is searched in trials with optimizer gd",
        ),
    ],
)
def test_an_optimizer_hyperparameter_is_searched_only_where_the_optimizer_takes_it(search, message) -> None:
    text = MINIMAL.replace("  optimizer: adam\n", search)
    with pytest.raises(SpecError) as err:
        load_spec(text)
    assert message in str(err.value)


@pytest.mark.parametrize(
    "search",
    [
        "  optimizer: {choices: [rmsprop, adam]}\n  beta1: {low: 0.8, high: 0.99, when: {optimizer: [adam]}}\n",
        # the condition may come through another entry that depends on the optimizer
        "  optimizer: {choices: [gd, momentum]}\n  nesterov: {choices: [true, false], when: {optimizer: momentum}}\n"
        "  beta1: {low: 0.5, high: 0.9, when: {nesterov: [true]}}\n",
        # a fixed value is not searched: it is recorded, and passed only to an optimizer that takes it
        "  optimizer: {choices: [rmsprop, adam]}\n  beta1: 0.95\n",
        # a schedule's parameter across schedules stays allowed (the trainer passes it where it is taken)
        "  optimizer: adam\n  schedule: {choices: [step, cosine]}\n  gamma: {low: 0.1, high: 0.9}\n"
        "  step_size: {low: 1, high: 3, when: {schedule: step}}\n",
    ],
)
def test_an_optimizer_hyperparameter_searched_where_it_is_taken_is_fine(search) -> None:
    load_spec(MINIMAL.replace("  optimizer: adam\n", search))


@pytest.mark.parametrize(("activation", "init"), [("relu", "he"), ("leaky_relu", "he"), ("tanh", "xavier")])
def test_init_left_out_is_optcores_pick_for_the_activation(activation, init) -> None:
    spec = load_spec(MINIMAL, [f"model.activation={activation}"])
    assert spec.model.init == init == optcore.ACTIVATIONS[activation].init
    assert spec.resolved()["model"]["init"] == init  # recorded, so the stored spec trains the same
    assert load_spec(MINIMAL, [f"model.activation={activation}", "model.init=he"]).model.init == "he"


def test_the_two_hashes_keep_the_values_stored_by_existing_sweeps() -> None:
    """Studies store the search hash and refuse to resume from another; runs are tagged with both. Their
    values are pinned: a change would strand every sweep started before it."""
    spec = load_spec(MINIMAL)
    assert (spec.spec_hash(), spec.search_hash()) == ("0ca4cda916f9", "5d8991bb0a09")
    assert load_spec(MINIMAL, ["trials=30"]).search_hash() == spec.search_hash() != spec.spec_hash()
    # Non-ASCII text: UTF-8 in the spec hash, \\u escapes in the search hash (as each has always been written).
    text = MINIMAL.replace("{name: iris}", "{loader: 'pkg.mod:load', target: y, city: Zürich}")
    spec = load_spec(text)
    data = spec.resolved()
    whole = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert spec.spec_hash() == hashlib.sha256(whole.encode()).hexdigest()[:12]
    del data["trials"]
    search = json.dumps(data, sort_keys=True, separators=(",", ":"))
    assert "\\u00fc" in search and spec.search_hash() == hashlib.sha256(search.encode()).hexdigest()[:12]


def test_a_trials_setting_is_read_from_its_params_by_each_hyperparameters_type() -> None:
    """`sweeps reproduce` reads a run's params (text) through the logged spec's types, not by guessing."""
    spec = load_spec(
        MINIMAL.replace("optimizer: adam", "optimizer: momentum")
        + "  nesterov: {choices: [true, false]}\n  schedule: step\n  step_size: 2\n  gamma: {choices: [1]}\n"
    )
    params = {"batch_size": "16", "optimizer": "momentum", "lr": "0.001", "nesterov": "True", "gamma": "1"}
    params |= {"schedule": "step", "step_size": "2", "model.hidden": "[8]", "sweep_seed": "0"}
    setting = spec.setting_from_text(params)
    assert setting == {
        "batch_size": 16,
        "optimizer": "momentum",
        "lr": 0.001,
        "nesterov": True,
        "gamma": 1.0,
        "schedule": "step",
        "step_size": 2,
    }
    assert [type(setting[k]) for k in ("batch_size", "gamma", "nesterov")] == [int, float, bool]
    with pytest.raises(SpecError, match=re.escape("'2.5' is not a value of step_size, which is an integer")):
        spec.setting_from_text({"step_size": "2.5"})
