"""RunConfig: TOML files, flags over files, and errors that name the key and the fix."""

from __future__ import annotations

import pytest
from hilnas.flows.config import ConfigError, RunConfig, load_config, resolve_config


def write(tmp_path, text: str):
    path = tmp_path / "hilnas.toml"
    path.write_text(text)
    return path


def test_defaults_are_the_embedded_main_job():
    cfg = RunConfig()
    assert (cfg.archs, cfg.reps, cfg.mode, cfg.points) == (50, 30, "supernet", 8)
    assert cfg.objectives == ["error", "latency_ms"]
    assert cfg.reference_devices and cfg.onnx and cfg.devices == []


def test_file_sets_every_flag_and_flags_win(tmp_path):
    path = write(
        tmp_path,
        'archs = 5\nreps = 3\nmode = "surrogate"\nobjectives = ["error", "latency", "energy"]\n'
        'devices = ["cpu"]\npoints = 4\nrun_dir = "out"\nonnx = false\nepochs = 2\n',
    )
    cfg = load_config(path, {"reps": 7, "seed": None})
    assert cfg.archs == 5 and cfg.reps == 7 and cfg.mode == "surrogate"
    assert cfg.objectives == ["error", "latency_ms", "energy_mj"]
    assert cfg.run_dir == tmp_path / "out"  # relative to the file
    assert cfg.onnx is False and cfg.epochs == 2 and cfg.devices == ["cpu"]


def test_unknown_key_is_named_with_a_suggestion(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "arch = 5\n"))
    msg = str(e.value)
    assert "unknown key 'arch'" in msg and "did you mean 'archs'" in msg and "valid keys" in msg


@pytest.mark.parametrize(
    "text, key, words",
    [
        ("reps = 0\n", "reps", "greater than or equal to 1"),
        ('mode = "fast"\n', "mode", "supernet"),
        ('objectives = ["error", "speed"]\n', "objectives", "unknown objective 'speed'"),
        ('objectives = ["error"]\n', "objectives", "at least two"),
        ('archs = "many"\n', "archs", "integer"),
    ],
)
def test_bad_values_name_the_key(tmp_path, text, key, words):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    assert f"bad value for {key!r}" in str(e.value) and words in str(e.value)


def test_syntax_error_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "archs = = 5\n"))
    with pytest.raises(ConfigError, match="does not exist") as e:
        load_config(tmp_path / "missing.toml")
    assert isinstance(e.value, LookupError)  # a NotFoundError
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path)  # a directory


def test_flags_alone_are_validated():
    assert resolve_config(None, {"archs": 3, "objectives": "error,latency"}).objectives == [
        "error",
        "latency_ms",
    ]
    with pytest.raises(ConfigError, match="'points'"):
        resolve_config(None, {"points": 1})


@pytest.mark.parametrize(
    "text, key, expected",
    [
        ("reps = true\n", "reps", "valid integer"),
        ('onnx = "yes"\n', "onnx", "valid boolean"),
        ('warmup = "3"\n', "warmup", "valid integer"),
        ("reference_devices = 0\n", "reference_devices", "valid boolean"),
        ("batch_size = 2.0\n", "batch_size", "valid integer"),
    ],
)
def test_toml_values_are_not_coerced(tmp_path, text, key, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert f"bad value for {key!r}" in msg and expected in msg and str(path) in msg
    assert "; got " in msg  # the value read


def test_sizes_have_upper_bounds():
    for key, value in [("reps", 10**12), ("warmup", 10**9), ("seed", 2**40), ("epochs", 10**7)]:
        with pytest.raises(ConfigError, match=f"'{key}'.*less than or equal"):
            resolve_config(None, {key: value})


def test_hilnas_run_rejects_a_bad_config_file(tmp_path, hilnas_cli):
    code, _, err = hilnas_cli(["run", "--config", str(write(tmp_path, "reps = -1\nfoo = 1\n"))])
    assert code == 2
    assert "'reps'" in err and "unknown key 'foo'" in err
    assert not (tmp_path / "runs").exists()


def test_hilnas_run_rejects_a_bad_flag(hilnas_cli):
    code, _, err = hilnas_cli(["run", "--mode", "quantum"])
    assert code == 2 and "'mode'" in err and "supernet" in err


def test_search_table_is_checked_against_the_search_settings(tmp_path):
    cfg = load_config(write(tmp_path, 'mode = "surrogate"\n[search]\naccuracy_queries = 20\n'))
    assert cfg.search == {"accuracy_queries": 20}
    with pytest.raises(ConfigError, match="unknown search setting 'accuracy_query'.*did you mean"):
        load_config(write(tmp_path, "[search]\naccuracy_query = 20\n"))
    with pytest.raises(ConfigError, match="search.epochs is set by the top-level key"):
        load_config(write(tmp_path, "[search]\nepochs = 2\n"))
    with pytest.raises(ConfigError, match="accuracy_queries=1 is out of range"):
        load_config(write(tmp_path, "[search]\naccuracy_queries = 1\n"))


def test_main_job_sizes_the_supernet_search_unless_told():
    from hilnas.flows.config import MAIN_JOB_SUPERNET_EPOCHS, MAIN_JOB_SUPERNET_SEARCH

    assert RunConfig().search_settings() == (MAIN_JOB_SUPERNET_EPOCHS, MAIN_JOB_SUPERNET_SEARCH)
    cfg = RunConfig(epochs=3, search={"warmup_epochs": 1, "batch_size": 32})
    assert cfg.search_settings() == (3, {"warmup_epochs": 1, "batch_size": 32})
    assert RunConfig(mode="surrogate").search_settings() == (None, {})
