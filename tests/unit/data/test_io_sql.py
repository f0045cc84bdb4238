"""A SQL source (`--data URL --table T` / `--query Q`) against a real SQLite database file: read with
pandas through SQLAlchemy, validated by the same contract as a Parquet file."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from fabray.cli import main
from fabray.data import io
from fabray.data.simulate import simulate_preset
from fabray.data.snapshot import local_file, snapshot
from fabray.data.validate import load_validated
from fabray.errors import BadInputError


@pytest.fixture(scope="module")
def fab(tmp_path_factory):
    """(sqlite URL, parquet path): the same tiny simulated fab in a database table and a file."""
    d = tmp_path_factory.mktemp("sql")
    frame = simulate_preset("tiny", seed=3)
    parquet = io.write_table(frame, d / "fab.parquet")
    url = f"sqlite:///{d / 'fab.db'}"
    engine = sa.create_engine(url)
    frame.to_sql("oht", engine, index=False)
    bad = frame.head(50).copy()
    bad["queue_len"] = bad["queue_len"].astype(object)
    bad.loc[7, "queue_len"] = "n/a?"
    bad.to_sql("bad", engine, index=False)
    engine.dispose()
    return url, parquet


def test_a_table_reads_and_validates_as_the_same_file_does(fab):
    url, parquet = fab
    from_db = load_validated(io.data_source(url, table="oht"))
    pd.testing.assert_frame_equal(from_db, load_validated(parquet))


def test_a_query_reads_its_rows_only(fab):
    url, parquet = fab
    zone = load_validated(parquet)["zone"].iloc[0]
    frame = load_validated(io.data_source(url, query=f"SELECT * FROM oht WHERE zone = '{zone}'"))
    assert set(frame["zone"]) == {zone} and len(frame) > 0


def test_contract_errors_name_the_source_row_and_column(fab):
    url, _ = fab
    with pytest.raises(BadInputError) as err:
        load_validated(io.data_source(url, table="bad"))
    text = str(err.value)
    assert "queue_len" in text and "row 8" in text and "(table bad)" in text


@pytest.mark.parametrize("kwargs, match", [
    ({}, "exactly one of --table or --query"),
    ({"table": "oht", "query": "SELECT 1"}, "exactly one of --table or --query"),
    ({"table": " "}, "empty"),
])
def test_a_url_needs_one_table_or_query(fab, kwargs, match):
    with pytest.raises(BadInputError, match=match):
        io.data_source(fab[0], **kwargs)


def test_missing_table_failing_query_unknown_dialect_and_stray_table_are_bad_input(fab, tmp_path):
    url, parquet = fab
    with pytest.raises(BadInputError, match=r"no table 'nope'; tables here: \['bad', 'oht'\]"):
        io.read_sql(io.data_source(url, table="nope"))
    with pytest.raises(BadInputError, match="cannot read .*no such column"):
        io.read_sql(io.data_source(url, query="SELECT missing_column FROM oht"))
    with pytest.raises(BadInputError, match="no SQLAlchemy dialect or driver 'nosuchdb'"):
        io.data_source("nosuchdb://host/db", table="oht")
    with pytest.raises(BadInputError, match="--data must then be a SQLAlchemy URL"):
        io.data_source(parquet, table="oht")
    assert io.data_source(parquet) == parquet


def test_the_password_never_shows():
    source = io.SqlSource("postgresql://reader:s3cret@db.fab/mes", table="oht")
    assert "s3cret" not in str(source) and "s3cret" not in repr(source.to_dict())
    assert source.to_dict() == {"url": "postgresql://reader:***@db.fab/mes", "table": "oht"}


def test_snapshot_is_validated_parquet_and_never_overwrites(fab, tmp_path):
    url, parquet = fab
    source = io.data_source(url, table="oht")
    out = snapshot(source, tmp_path / "r1.data.parquet")
    pd.testing.assert_frame_equal(load_validated(out), load_validated(parquet))
    with pytest.raises(BadInputError, match="already exists"):
        snapshot(source, out)
    with local_file(source) as path:
        assert path.suffix == ".parquet" and path.is_file()
    assert not path.exists()  # temporary


def test_cli_validate_and_train_read_sql(fab, tmp_path, capsys):
    url, _ = fab
    assert main(["validate", url, "--table", "oht"]) == 0
    assert "(table oht)" in capsys.readouterr().out
    assert main(["validate", url, "--table", "bad"]) == 2
    # bad input in training (an unknown model) → exit 2, and no snapshot is left behind
    run = tmp_path / "r1"
    assert main(["train", "--data", url, "--table", "oht", "--out", str(run), "--models", "nope"]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert not (tmp_path / "r1.data.parquet").exists() and not run.exists()
