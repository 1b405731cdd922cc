"""The strategies file: YAML rows (libyaml's safe loader where PyYAML has it), errors that name the file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from alpha_panda.strategy_file import load_strategy_file, read_strategy_rows
from operators.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_rows_are_what_the_pure_python_safe_loader_reads() -> None:
    path = EXAMPLES / "strategies.yaml"
    expected = yaml.safe_load(path.read_text(encoding="utf-8"))["strategies"]
    assert read_strategy_rows(path) == expected


def test_a_json_file_is_read_as_yaml(tmp_path: Path) -> None:
    path = tmp_path / "strategies.yaml"
    path.write_text(
        '{"strategies": [{"id": "mom", "strategy_type": "momentum", "instruments": [100001, 100002],'
        ' "parameters": {"lookback_period": 5}}]}',
        encoding="utf-8",
    )
    [config] = load_strategy_file(path)
    assert (config.id, config.instruments) == ("mom", (100001, 100002))


def test_python_tags_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "strategies.yaml"
    path.write_text("strategies: !!python/object/apply:os.system ['true']\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=f"cannot read strategies file {path}"):
        read_strategy_rows(path)


def test_malformed_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "strategies.yaml"
    path.write_text("strategies: [\n  {id: mom\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=f"cannot read strategies file {path}"):
        read_strategy_rows(path)


def test_a_mapping_without_a_list_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "strategies.yaml"
    path.write_text("strategies: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="expected a list of strategies"):
        read_strategy_rows(path)
