"""`fabray.data.io`: reading keeps what is in the file; writing is atomic; bad files are named."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from fabray import schema
from fabray.data import io
from fabray.errors import BadInputError


def small_frame() -> pd.DataFrame:
    return pd.DataFrame({
        schema.TIMESTAMP: pd.date_range("2024-03-01 06:00", periods=4, freq="min"),
        schema.ZONE: ["007", "007", "010", "010"],
        "queue_len": [1.0, 2.5, 0.0, 4.0],
        schema.TRANSPORT_TIME: [61.5, np.nan, 80.0, 75.25],
    })


@pytest.mark.parametrize("name", ["t.parquet", "t.pq", "t.csv", "t.csv.gz"])
def test_round_trip(tmp_path, name):
    frame = small_frame()
    written = io.write_table(frame, tmp_path / name)
    back = io.read_table(written)
    assert list(back.columns) == list(frame.columns)
    assert back[schema.ZONE].tolist() == ["007", "007", "010", "010"]  # ids kept as written
    np.testing.assert_array_equal(back["queue_len"].to_numpy(float), frame["queue_len"].to_numpy())
    np.testing.assert_array_equal(back[schema.TRANSPORT_TIME].to_numpy(float),
                                  frame[schema.TRANSPORT_TIME].to_numpy())
    assert pd.to_datetime(back[schema.TIMESTAMP]).tolist() == frame[schema.TIMESTAMP].tolist()


def test_csv_text_in_numeric_column_is_kept_not_coerced(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("timestamp,zone,queue_len,transport_time_s\n"
                    "2024-03-01 06:00,A,1,60\n"
                    "2024-03-01 06:01,A,abc,\n"
                    "2024-03-01 06:02,A,NA,61\n")
    frame = io.read_table(path)
    assert frame["queue_len"].tolist() == ["1", "abc", "NA"]  # nothing turned into NaN
    assert np.isnan(frame[schema.TRANSPORT_TIME][1])  # only an empty cell is missing
    assert frame[schema.TRANSPORT_TIME].dtype == np.float64


def test_parquet_saved_with_an_index_gives_the_column_back(tmp_path):
    path = tmp_path / "t.parquet"
    small_frame().set_index(schema.TIMESTAMP).to_parquet(path)
    frame = io.read_table(path)
    assert schema.TIMESTAMP in frame.columns and len(frame) == 4


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("missing.csv", None, "file not found"),
        ("data.xlsx", b"x", "unknown file type"),
        ("empty.csv", b"", "the file is empty"),
        ("empty.parquet", b"", "the file is empty"),
        ("corrupt.parquet", b"PAR1 this is not parquet at all", "cannot read as PARQUET"),
        ("latin1.csv", "timestamp,zone\n2024-03-01 06:00,Zone\xe9\n".encode("latin-1"), "not UTF-8"),
    ],
)
def test_unreadable_files_are_bad_input_naming_the_file(tmp_path, name, content, expected):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(BadInputError, match=expected) as caught:
        io.read_table(path)
    assert str(path) in str(caught.value)


def test_a_directory_is_not_a_file(tmp_path):
    folder = tmp_path / "d.csv"
    folder.mkdir()
    with pytest.raises(BadInputError, match="not a file"):
        io.read_table(folder)


def test_header_only_csv_reads_as_an_empty_frame(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("timestamp,zone,queue_len\n")
    frame = io.read_table(path)
    assert len(frame) == 0 and list(frame.columns) == ["timestamp", "zone", "queue_len"]


def test_write_replaces_atomically_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "sub" / "t.parquet"
    io.write_table(small_frame(), path)
    io.write_table(small_frame().iloc[:2], path)  # overwrite
    assert len(io.read_table(path)) == 2
    assert sorted(os.listdir(path.parent)) == ["t.parquet"]
    assert os.stat(path).st_mode & 0o444 == 0o444 & ~_umask()  # readable like any new file


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "t.csv"
    io.write_table(small_frame(), path)
    before = path.read_bytes()

    def explode(self, *args, **kwargs):
        with open(args[0], "w") as half:
            half.write("timestamp,zo")  # a partial write, then the failure
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", explode)
    with pytest.raises(OSError, match="disk full"):
        io.write_table(small_frame(), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["t.csv"]


def test_write_unknown_extension(tmp_path):
    with pytest.raises(BadInputError, match="unknown file type"):
        io.write_table(small_frame(), tmp_path / "t.json")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
