"""`fabray validate` and `fabray.data.validate`: one test per kind of bad file, through the CLI.

Each test breaks a small clean frame in one way, writes it as CSV or Parquet, runs
`fabray.cli.main(["validate", path])` and checks the exit code and that the message names the
problem, the column and the row (row 1 = first data row under the header).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fabray import schema
from fabray.cli import main
from fabray.data import validate
from fabray.errors import BadInputError

ZONES = ("BAY01", "BAY02", "INTERBAY")
MINUTES = 30
START = pd.Timestamp("2024-03-01 06:00")


def clean_frame(zones: tuple[str, ...] = ZONES, minutes: int = MINUTES, seed: int = 0) -> pd.DataFrame:
    """A few zones × some minutes of plausible OHT traffic, rows grouped by zone, in time order."""
    rng = np.random.default_rng(seed)
    n = len(zones) * minutes
    completions = rng.poisson(4, n).astype(float)
    completions[::7] = 0.0  # some minutes without completions: transport time empty there
    vehicles = 20
    idle = rng.integers(0, 6, n).astype(float)
    frame = pd.DataFrame({
        schema.TIMESTAMP: np.tile(pd.date_range(START, periods=minutes, freq="min").to_numpy(), len(zones)),
        schema.ZONE: np.repeat(zones, minutes),
        "requests": rng.poisson(4, n).astype(float),
        "completions": completions,
        "queue_len": rng.poisson(6, n).astype(float),
        "vehicles_idle": idle,
        "vehicle_util": (vehicles - idle - 1) / vehicles,
        "vehicles_down": rng.integers(0, 2, n).astype(float),
        "blocked_segments": rng.integers(0, 2, n).astype(float),
        "mean_speed": rng.uniform(2.0, 4.0, n),
        "wip_lots": rng.poisson(40, n).astype(float),
        "stocker_fill": rng.uniform(0.3, 0.9, n),
        "hot_lots": rng.integers(0, 3, n).astype(float),
        schema.TRANSPORT_TIME: np.where(completions > 0, rng.gamma(6.0, 15.0, n), np.nan),
    })
    return frame[list(schema.COLUMNS)]


def write(frame: pd.DataFrame, tmp_path, fmt: str = "csv") -> str:
    path = tmp_path / f"data.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return str(path)


def run_validate(path: str, capsys, *extra: str) -> tuple[int, str, str]:
    code = main(["validate", path, *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_bad(path: str, capsys, *needles: str, extra: tuple[str, ...] = ()) -> str:
    """Exit code 2, and every needle appears in the error message (on stderr)."""
    code, out, err = run_validate(path, capsys, *extra)
    assert code == 2, f"expected exit 2, got {code}; stdout={out!r} stderr={err!r}"
    for needle in needles:
        assert needle in err, f"{needle!r} not in:\n{err}"
    return err


# ---------------------------------------------------------------------------- clean files


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_clean_file_is_ok(tmp_path, capsys, fmt):
    code, out, err = run_validate(write(clean_frame(), tmp_path, fmt), capsys)
    assert code == 0, err
    assert "OK: 90 rows, 3 zones, from 2024-03-01 06:00:00 to 2024-03-01 06:29:00" in out
    assert "WARNING" not in out


def test_zones_interleaved_in_time_order_are_ok(tmp_path, capsys):
    frame = clean_frame().sort_values([schema.TIMESTAMP, schema.ZONE], kind="stable")
    code, out, err = run_validate(write(frame, tmp_path), capsys)
    assert code == 0, err


def test_gaps_are_warnings_with_zone_position_and_length(tmp_path, capsys):
    frame = clean_frame()
    in_gap = (frame[schema.ZONE] == "BAY02") & frame[schema.TIMESTAMP].between(
        START + pd.Timedelta(minutes=10), START + pd.Timedelta(minutes=14)
    )
    frame = frame[~in_gap]
    code, out, err = run_validate(write(frame, tmp_path), capsys)
    assert code == 0, err
    assert "OK: 85 rows, 3 zones" in out
    assert "WARNING: 1 gap(s) in 1 zone(s), 5 missing minute(s)" in out
    # BAY02 starts at row 31; minutes 0..9 are rows 31..40, minute 15 is row 41.
    assert ("    zone BAY02: 5 minute(s) missing, from 2024-03-01 06:10:00 to 2024-03-01 06:14:00 "
            "(between rows 40 and 41)\n") in out


# ---------------------------------------------------------------------------- columns


def test_missing_column(tmp_path, capsys):
    err = assert_bad(write(clean_frame().drop(columns=["queue_len"]), tmp_path), capsys,
                     "column 'queue_len' is missing", "[missing_column]")
    assert "Traceback" not in err


def test_extra_columns_including_a_saved_index(tmp_path, capsys):
    frame = clean_frame().assign(operator="kim")
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=True)  # a common slip: the row index becomes 'Unnamed: 0'
    assert_bad(str(path), capsys, "unexpected column 'operator'", "unexpected column 'Unnamed: 0'",
               "saved row index", "[extra_column]")


# ---------------------------------------------------------------------------- cell types


def test_text_in_numeric_column_names_the_row_as_seen_in_the_csv(tmp_path, capsys):
    frame = clean_frame().astype({"queue_len": object})
    frame.loc[16, "queue_len"] = "abc"  # row 17
    frame.loc[40, "queue_len"] = "12,5"  # row 41
    path = write(frame, tmp_path)
    err = assert_bad(path, capsys, "column 'queue_len': 2 cell(s) hold text where a number is expected",
                     "row 17: 'abc'", "row 41: '12,5'", "[text_in_numeric]")
    assert "row N is on line N+1" in err
    lines = open(path).read().splitlines()
    assert ",abc," in lines[17] and ",12,5," not in lines[0]  # row 17 is line 18 (index 17)


def test_text_is_not_also_reported_as_missing(tmp_path, capsys):
    frame = clean_frame().astype({schema.TRANSPORT_TIME: object})
    frame.loc[1, schema.TRANSPORT_TIME] = "slow"
    err = assert_bad(write(frame, tmp_path), capsys, "row 2: 'slow'")
    assert "[missing_value]" not in err


def test_wrong_dtype_in_parquet(tmp_path, capsys):
    frame = clean_frame().assign(blocked_segments=lambda f: f["blocked_segments"] > 0)
    assert_bad(write(frame, tmp_path, "parquet"), capsys,
               "column 'blocked_segments' holds bool values; expected numbers", "[wrong_dtype]")


def test_numeric_timestamps_are_a_wrong_dtype(tmp_path, capsys):
    frame = clean_frame().assign(timestamp=np.arange(90))
    assert_bad(write(frame, tmp_path, "parquet"), capsys, "column 'timestamp' holds int64 values",
               "ISO-8601", "[wrong_dtype]")


# ---------------------------------------------------------------------------- timestamps and keys


def test_bad_timestamp(tmp_path, capsys):
    frame = clean_frame().astype({schema.TIMESTAMP: str})
    frame.loc[4, schema.TIMESTAMP] = "yesterday 6am"
    assert_bad(write(frame, tmp_path), capsys, "column 'timestamp': 1 value(s) are not timestamps",
               "row 5: 'yesterday 6am'", "[bad_timestamp]")


def test_timestamp_not_on_a_whole_minute(tmp_path, capsys):
    frame = clean_frame()
    frame.loc[7, schema.TIMESTAMP] += pd.Timedelta(seconds=30)
    assert_bad(write(frame, tmp_path, "parquet"), capsys, "not on a whole minute",
               "row 8: 2024-03-01 06:07:30", "[not_minute_resolution]")


def test_duplicate_zone_minute(tmp_path, capsys):
    frame = clean_frame()
    frame = pd.concat([frame, frame.iloc[[35]]], ignore_index=True)  # row 91 repeats row 36
    assert_bad(write(frame, tmp_path), capsys, "1 row(s) repeat a (zone, timestamp) pair",
               "row 91: zone BAY02 at 2024-03-01 06:05:00 is also row 36", "[duplicate_key]")


def test_timestamps_out_of_order_within_a_zone(tmp_path, capsys):
    frame = clean_frame()
    rows = frame.index.to_numpy().copy()
    rows[[62, 63]] = rows[[63, 62]]  # INTERBAY 06:02 and 06:03 swapped: rows 63, 64
    frame = frame.iloc[rows]
    assert_bad(write(frame, tmp_path), capsys, "'timestamp' goes backwards within a zone in 1 row(s)",
               "row 64: zone INTERBAY at 2024-03-01 06:02:00 comes after row 63 (2024-03-01 06:03:00)",
               "[out_of_order]")


def test_missing_zone(tmp_path, capsys):
    frame = clean_frame()
    frame.loc[9, schema.ZONE] = None
    assert_bad(write(frame, tmp_path), capsys, "column 'zone': 1 row(s) have no zone id", "row 10",
               "[missing_value]")


# ---------------------------------------------------------------------------- values


def test_nan_where_not_allowed(tmp_path, capsys):
    frame = clean_frame()
    frame.loc[[3, 50], "wip_lots"] = np.nan
    assert_bad(write(frame, tmp_path, "parquet"), capsys,
               "column 'wip_lots': 2 row(s) are empty (NaN)", "row 4", "row 51", "[missing_value]")


def test_empty_transport_time_only_where_nothing_completed(tmp_path, capsys):
    frame = clean_frame()
    assert frame.loc[0, "completions"] == 0 and np.isnan(frame.loc[0, schema.TRANSPORT_TIME])
    frame.loc[1, "completions"] = 3.0
    frame.loc[1, schema.TRANSPORT_TIME] = np.nan  # row 2: 3 transports completed, no time
    err = assert_bad(write(frame, tmp_path), capsys,
                     "column 'transport_time_s': 1 row(s) are empty although transports completed",
                     "row 2: transport_time_s is empty, completions = 3")
    assert "row 1:" not in err  # completions == 0 there: allowed


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_infinite_values_are_never_allowed(tmp_path, capsys, fmt):
    frame = clean_frame()
    frame.loc[12, "mean_speed"] = np.inf
    frame.loc[13, schema.TRANSPORT_TIME] = -np.inf
    assert_bad(write(frame, tmp_path, fmt), capsys,
               "column 'mean_speed': 1 value(s) are infinite", "row 13: inf",
               "column 'transport_time_s': 1 value(s) are infinite", "row 14: -inf",
               "[infinite_value]")


def test_negative_count(tmp_path, capsys):
    frame = clean_frame()
    frame.loc[20, "requests"] = -3
    assert_bad(write(frame, tmp_path), capsys, "column 'requests': 1 negative count(s)",
               "row 21: -3", "[negative_value]")


def test_fraction_outside_zero_one(tmp_path, capsys):
    frame = clean_frame()
    frame.loc[5, "vehicle_util"] = 1.25
    frame.loc[6, "stocker_fill"] = -0.1
    assert_bad(write(frame, tmp_path), capsys,
               "column 'vehicle_util': 1 value(s) outside [0, 1]", "row 6: 1.25",
               "column 'stocker_fill': 1 value(s) outside [0, 1]", "row 7: -0.1",
               "[fraction_out_of_range]")


# ---------------------------------------------------------------------------- files


def test_header_only_file_has_no_rows(tmp_path, capsys):
    assert_bad(write(clean_frame().iloc[:0], tmp_path), capsys, "no data rows", "[no_rows]")


def test_zero_byte_file(tmp_path, capsys):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    assert_bad(str(path), capsys, str(path), "empty")


def test_every_kind_is_reported_and_capped_per_kind(tmp_path, capsys):
    frame = clean_frame().astype({"queue_len": object})
    frame.loc[0:9, "requests"] = -1.0  # 10 negative counts
    frame.loc[2, "queue_len"] = "lots"
    frame.loc[3, "vehicle_util"] = 2.0
    frame = pd.concat([frame, frame.iloc[[5]]], ignore_index=True)  # row 91: BAY01 06:05 again
    err = assert_bad(write(frame, tmp_path), capsys, "[negative_value]", "[text_in_numeric]",
                     "[fraction_out_of_range]", "[duplicate_key]", "[out_of_order]",
                     "row 1: -1", "row 2: -1", "... and 9 more", "5 problem(s) found",
                     extra=("--max-errors", "2"))
    assert "row 3: -1" not in err


def test_max_errors_must_be_positive(tmp_path, capsys):
    assert_bad(write(clean_frame(), tmp_path), capsys, "--max-errors must be at least 1",
               extra=("--max-errors", "0"))


# ---------------------------------------------------------------------------- library API


def test_validate_frame_report_structure():
    frame = clean_frame()
    frame.loc[20, "requests"] = -3
    report = validate.validate_frame(frame)
    assert not report.ok and report.warnings == []
    (issue,) = report.errors
    assert (issue.kind, issue.column, issue.rows, issue.count) == ("negative_value", "requests", [21], 1)


def test_load_validated_returns_a_clean_sorted_frame(tmp_path):
    frame = clean_frame().sort_values([schema.TIMESTAMP, schema.ZONE], kind="stable")
    frame = frame.astype({schema.TIMESTAMP: str})  # as text, the way a CSV export holds it
    clean = validate.load_validated(write(frame, tmp_path))
    assert list(clean.columns) == list(schema.COLUMNS)
    assert pd.api.types.is_datetime64_dtype(clean[schema.TIMESTAMP])
    assert all(isinstance(z, str) for z in clean[schema.ZONE])
    assert all(clean[f].dtype == np.float64 for f in schema.FEATURES)
    assert list(clean[schema.ZONE].unique()) == sorted(ZONES)
    expected = clean_frame().sort_values([schema.ZONE, schema.TIMESTAMP], ignore_index=True)
    pd.testing.assert_frame_equal(clean, expected, check_dtype=False)


def test_load_validated_keeps_zone_ids_as_written(tmp_path):
    frame = clean_frame(zones=("007", "010"))
    clean = validate.load_validated(write(frame, tmp_path))
    assert sorted(clean[schema.ZONE].unique()) == ["007", "010"]


def test_load_validated_refuses_with_every_error(tmp_path):
    frame = clean_frame()
    frame.loc[20, "requests"] = -3
    frame.loc[5, "vehicle_util"] = 1.25
    with pytest.raises(BadInputError) as caught:
        validate.load_validated(write(frame, tmp_path))
    message = str(caught.value)
    assert "data.csv" in message and "row 21: -3" in message and "row 6: 1.25" in message


def test_configured_column_names(tmp_path):
    spec = validate.ColumnSpec({schema.TIMESTAMP: "time", schema.ZONE: "bay"})
    frame = clean_frame().rename(columns={schema.TIMESTAMP: "time", schema.ZONE: "bay"})
    frame.loc[3, "bay"] = None
    report = validate.validate_frame(frame, spec)
    assert [(i.kind, i.column, i.rows) for i in report.errors] == [("missing_value", "bay", [4])]
    good = clean_frame().rename(columns={schema.TIMESTAMP: "time", schema.ZONE: "bay"})
    clean = validate.load_validated(write(good, tmp_path), spec)
    assert list(clean.columns) == list(schema.COLUMNS)
    with pytest.raises(BadInputError, match="unknown contract columns"):
        validate.ColumnSpec({"when": "time"})


def test_simulated_data_validates_clean(tmp_path):
    simulate = pytest.importorskip("fabray.data.simulate")
    if not hasattr(simulate, "simulate_preset"):
        pytest.skip("fabray.data.simulate.simulate_preset is not there yet")
    frame = simulate.simulate_preset("tiny", seed=0)
    report = validate.validate_frame(frame)
    assert report.ok, report.format("simulate(tiny)")
    assert report.n_rows == len(frame) > 0 and report.warnings == []
    for fmt in ("csv", "parquet"):  # and after a round trip through a file
        path = tmp_path / f"sim.{fmt}"
        frame.to_csv(path, index=False) if fmt == "csv" else frame.to_parquet(path, index=False)
        clean = validate.load_validated(path)
        assert len(clean) == len(frame)


def test_missing_value_words_and_blank_cells(tmp_path, capsys):
    frame = clean_frame().astype({"queue_len": object, schema.TRANSPORT_TIME: object})
    frame.loc[0, schema.TRANSPORT_TIME] = "NULL"  # completions == 0 there: allowed
    frame.loc[2, "queue_len"] = " NA "  # a word for "no value": empty, which this column may not be
    err = assert_bad(write(frame, tmp_path), capsys, "column 'queue_len': 1 row(s) are empty", "row 3")
    assert "[text_in_numeric]" not in err and "transport_time_s" not in err


def test_timestamps_with_utc_offsets(tmp_path, capsys):
    frame = clean_frame()
    frame[schema.TIMESTAMP] = frame[schema.TIMESTAMP].dt.strftime("%Y-%m-%dT%H:%M:%S+09:00")
    code, out, err = run_validate(write(frame, tmp_path), capsys)
    assert code == 0, err
    assert "from 2024-03-01 06:00:00+09:00 to 2024-03-01 06:29:00+09:00" in out
    frame.loc[1, schema.TIMESTAMP] = "2024-03-01T06:01:00+00:00"  # 9 hours later than its neighbours
    err = assert_bad(write(frame, tmp_path), capsys, "[out_of_order]")
    assert "different UTC offsets" in err  # said as a warning beside the errors


def test_load_validated_logs_gap_warnings(tmp_path, caplog):
    frame = clean_frame().drop(index=[70, 71])  # INTERBAY 06:10 and 06:11
    with caplog.at_level("WARNING", logger="fabray.data.validate"):
        clean = validate.load_validated(write(frame, tmp_path))
    assert len(clean) == 88
    assert ("zone INTERBAY: 2 minute(s) missing, from 2024-03-01 06:10:00 to 2024-03-01 06:11:00"
            in caplog.text)


# ---------------------------------------------------------------------------- optional columns


def with_optional(frame: pd.DataFrame | None = None, seed: int = 1) -> pd.DataFrame:
    """`clean_frame()` plus the optional plan and cause columns, all valid."""
    frame = clean_frame() if frame is None else frame
    rng = np.random.default_rng(seed)
    n = len(frame)
    causes = np.array(["", *schema.CAUSES], dtype=object)
    return frame.assign(
        lots_planned=rng.poisson(2, n).astype(float),
        pm_planned=rng.integers(0, 2, n).astype(float),
        cause=causes[rng.integers(0, len(causes), n)],
    )


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_optional_columns_are_allowed_and_kept(tmp_path, capsys, fmt):
    frame = with_optional()
    code, out, err = run_validate(write(frame, tmp_path, fmt), capsys)
    assert code == 0, err
    assert "OK: 90 rows" in out
    clean = validate.load_validated(write(frame, tmp_path, fmt))
    assert list(clean.columns) == [*schema.COLUMNS, *schema.OPTIONAL_COLUMNS]
    expected = frame.sort_values([schema.ZONE, schema.TIMESTAMP], ignore_index=True)
    for column in schema.PLAN_COLUMNS:
        np.testing.assert_array_equal(clean[column].to_numpy(), expected[column].to_numpy())
    assert clean[schema.CAUSE].tolist() == expected[schema.CAUSE].tolist()  # "" stays "" (CSV: empty cell)


def test_without_optional_columns_nothing_changes(tmp_path):
    clean = validate.load_validated(write(clean_frame(), tmp_path))
    assert list(clean.columns) == list(schema.COLUMNS)


def test_only_some_optional_columns(tmp_path):
    frame = with_optional().drop(columns=["pm_planned", schema.CAUSE])
    clean = validate.load_validated(write(frame, tmp_path, "parquet"))
    assert list(clean.columns) == [*schema.COLUMNS, "lots_planned"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_plan_columns_are_checked_like_counts(tmp_path, capsys, fmt):
    frame = with_optional().astype({"lots_planned": object})
    frame.loc[3, "lots_planned"] = -2.0  # row 4
    frame.loc[9, "lots_planned"] = np.nan  # row 10: a plan is never empty
    frame.loc[11, "pm_planned"] = np.inf  # row 12
    frame.loc[12, "pm_planned"] = -1.0  # row 13
    if fmt == "csv":
        frame.loc[20, "lots_planned"] = "many"  # row 21
    else:
        frame["lots_planned"] = frame["lots_planned"].astype(float)
    err = assert_bad(write(frame, tmp_path, fmt), capsys,
                     "column 'lots_planned': 1 negative count(s)", "row 4: -2",
                     "column 'lots_planned': 1 row(s) are empty", "row 10",
                     "column 'pm_planned': 1 value(s) are infinite", "row 12: inf",
                     "column 'pm_planned': 1 negative count(s)", "row 13: -1")
    if fmt == "csv":
        assert "column 'lots_planned': 1 cell(s) hold text" in err and "row 21: 'many'" in err


def test_unknown_cause_names_rows_and_values(tmp_path, capsys):
    frame = with_optional()
    frame.loc[4, schema.CAUSE] = "aliens"  # row 5
    frame.loc[30, schema.CAUSE] = "Breakdown "  # row 31: causes are lower-case names
    assert_bad(write(frame, tmp_path), capsys,
               "column 'cause': 2 value(s) are not a known cause ('Breakdown', 'aliens')",
               "row 5: 'aliens'", "row 31: 'Breakdown '", "shift_change, lot_release", "[unknown_cause]")


def test_numeric_cause_is_a_wrong_dtype(tmp_path, capsys):
    frame = with_optional().assign(cause=3.0)
    assert_bad(write(frame, tmp_path, "parquet"), capsys, "column 'cause' holds float64 values",
               "expected text", "[wrong_dtype]")


@pytest.mark.parametrize("empty", [np.nan, None, "", "null", "None"])
def test_empty_or_null_cause_means_none(tmp_path, empty):
    frame = with_optional().assign(cause=empty)  # a CSV of only empty causes reads as numbers: fine
    for fmt in ("csv", "parquet"):
        clean = validate.load_validated(write(frame, tmp_path, fmt))
        assert (clean[schema.CAUSE] == "").all()


def test_optional_columns_can_be_renamed(tmp_path):
    spec = validate.ColumnSpec({"lots_planned": "release_plan", schema.CAUSE: "why"})
    frame = with_optional().rename(columns={"lots_planned": "release_plan", schema.CAUSE: "why"})
    clean = validate.load_validated(write(frame, tmp_path), spec)
    assert list(clean.columns) == [*schema.COLUMNS, *schema.OPTIONAL_COLUMNS]
    # Under the contract name but mapped elsewhere, it is extra.
    report = validate.validate_frame(with_optional(), spec)
    assert {(i.kind, i.column) for i in report.errors} >= {("extra_column", "lots_planned")}
