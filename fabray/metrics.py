"""Every metric fabray reports (DESIGN §1), in one place: training, ensemble fitting, evaluation
and serving all call these functions, so a number means the same thing everywhere.

Conventions shared by every function here:

- **Undefined targets are skipped.** A target is NaN where it is undefined (fewer than `horizon`
  minutes follow the row, or none of them completed a transport). Such rows are dropped before
  anything is counted; `n` says how many rows were scored. A NaN or inf *prediction* for a row
  whose target is defined is a bug upstream and raises `ValueError`.
- **Events** are 0/1 targets (`delay_event`); scores are probabilities in [0, 1]; a row is an
  alarm where `prob >= threshold`.
- **0/0 ratios** (precision with no alarm, recall with no event, …) are 0.0, as scikit-learn's
  `zero_division=0`. **AUCs** need both classes: with only one class present (or no row at all)
  `pr_auc` and `roc_auc` are NaN. With no scored row at all every ratio is NaN.
- `pr_auc` is average precision (the step-wise area under the precision-recall curve,
  scikit-learn's `average_precision_score`), not the trapezoid, which overstates it.

Lead time: `lead_episodes`, `lead_metrics` and the headline `lead_score` are defined in the comment
block before `LEAD_PROFILES`; the older strict `lead_times` in its docstring.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

logger = logging.getLogger(__name__)

__all__ = [
    "EVENT_METRICS",
    "DELAY_METRICS",
    "event_metrics",
    "delay_metrics",
    "probability_losses",
    "best_threshold",
    "episode_starts",
    "lead_times",
    "lead_time_summary",
]

#: Keys of `event_metrics`, in the order reports print them.
EVENT_METRICS: tuple[str, ...] = (
    "accuracy", "balanced_accuracy", "precision", "recall", "f1", "pr_auc", "roc_auc",
    "tp", "fp", "fn", "tn", "n", "positive_rate",
)
#: Keys of `delay_metrics`.
DELAY_METRICS: tuple[str, ...] = ("mae", "rmse", "n")


def _defined_pairs(y_true: np.ndarray, y_pred: np.ndarray, pred_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Drop rows whose target is NaN; refuse non-finite predictions on the rows that remain."""
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)  # [N]
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)  # [N]
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"targets and {pred_name} must have the same length. "
            f"Received: {y_true.shape[0]} targets, {y_pred.shape[0]} {pred_name}"
        )
    keep = ~np.isnan(y_true)
    y_true, y_pred = y_true[keep], y_pred[keep]
    bad = ~np.isfinite(y_pred)
    if bad.any():
        raise ValueError(
            f"{pred_name} must be finite where the target is defined. "
            f"Received: {int(bad.sum())} NaN/inf values, first at defined row {int(np.argmax(bad))}"
        )
    if np.isinf(y_true).any():
        raise ValueError("targets must be finite or NaN (undefined). Received: inf")
    return y_true, y_pred


def _events(y_true: np.ndarray) -> np.ndarray:
    """0/1 float targets → bool; anything else is an error."""
    is_binary = (y_true == 0) | (y_true == 1)
    if not is_binary.all():
        bad = y_true[~is_binary][:5]
        raise ValueError(f"event targets must be 0, 1 or NaN. Received: {bad.tolist()}")
    return y_true == 1


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else 0.0


def event_metrics(
    y_true: np.ndarray, prob: np.ndarray, threshold: float = 0.5, alarm: np.ndarray | None = None,
) -> dict[str, float]:
    """Classification metrics of event probabilities, alarm where `prob >= threshold`.

    Args:
        y_true: [N] delay_event, 0/1, NaN where undefined (skipped).
        prob: [N] predicted probability of an event.
        threshold: decision threshold in [0, 1].
        alarm: [N] bool alarm to count instead of `prob >= threshold` (e.g. an
            `fabray.alarm.AlarmPolicy`'s); the AUCs still rank `prob`.

    Returns:
        A dict with the keys of `EVENT_METRICS`: accuracy, balanced_accuracy (mean of the recall
        of each class present), precision, recall, f1, pr_auc, roc_auc (NaN with one class),
        tp, fp, fn, tn, n (rows scored), positive_rate (share of events among scored rows).
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1]. Received: threshold={threshold}")
    if alarm is not None:
        alarm = _as_alarm(alarm)
        _check_lengths(np.asarray(y_true).reshape(-1).size, alarm=alarm)
        alarm = alarm[~np.isnan(np.asarray(y_true, dtype=np.float64).reshape(-1))]
    y_true, prob = _defined_pairs(y_true, prob, "probabilities")
    event = _events(y_true)  # [n]
    alarm = prob >= threshold if alarm is None else alarm  # [n]
    n = int(event.size)
    if n == 0:
        logger.warning("event_metrics: no row with a defined target; every metric is NaN")
        return {
            key: (0 if key in ("tp", "fp", "fn", "tn", "n") else math.nan) for key in EVENT_METRICS
        }
    tp = int(np.sum(alarm & event))
    fp = int(np.sum(alarm & ~event))
    fn = int(np.sum(~alarm & event))
    tn = int(np.sum(~alarm & ~event))
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    class_recalls = [tp / (tp + fn)] if tp + fn else []
    class_recalls += [tn / (tn + fp)] if tn + fp else []
    both_classes = 0 < tp + fn < n
    return {
        "accuracy": (tp + tn) / n,
        "balanced_accuracy": float(np.mean(class_recalls)),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "pr_auc": float(average_precision_score(event, prob)) if both_classes else math.nan,
        "roc_auc": float(roc_auc_score(event, prob)) if both_classes else math.nan,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "n": n,
        "positive_rate": (tp + fn) / n,
    }


def delay_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Regression metrics of predicted `delay_s`: {mae, rmse, n}; NaN targets skipped.

    With no defined target, mae and rmse are NaN and n is 0.
    """
    y_true, y_pred = _defined_pairs(y_true, y_pred, "predictions")
    if y_true.size == 0:
        return {"mae": math.nan, "rmse": math.nan, "n": 0}
    err = y_pred - y_true  # [n]
    return {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err * err))),
        "n": int(err.size),
    }


def probability_losses(y_true: np.ndarray, prob: np.ndarray, eps: float = 1e-4) -> dict[str, float]:
    """Proper scoring rules of event probabilities: {log_loss, brier, n}, NaN targets skipped.

    log_loss clips probabilities to [eps, 1 − eps] (one confident miss costs at most
    −log(eps) ≈ 9.2 nats); brier is the mean squared error of the probability.
    """
    y_true, prob = _defined_pairs(y_true, prob, "probabilities")
    event = _events(y_true)
    if event.size == 0:
        return {"log_loss": math.nan, "brier": math.nan, "n": 0}
    p = np.clip(prob, eps, 1.0 - eps)
    log_loss = -np.mean(np.where(event, np.log(p), np.log1p(-p)))
    return {
        "log_loss": float(log_loss),
        "brier": float(np.mean((prob - y_true) ** 2)),
        "n": int(event.size),
    }


def best_threshold(y_true: np.ndarray, prob: np.ndarray) -> tuple[float, float]:
    """The threshold that maximizes F1 (alarm where `prob >= threshold`) and that F1.

    The threshold is one of the predicted probabilities, so `event_metrics(y_true, prob,
    threshold)["f1"]` equals the F1 returned. Ties go to the highest threshold (fewest alarms).
    NaN targets are skipped. With no event among the scored rows no threshold helps: returns
    (0.5, 0.0).
    """
    y_true, prob = _defined_pairs(y_true, prob, "probabilities")
    event = _events(y_true)
    n_events = int(event.sum())
    if n_events == 0:
        logger.warning("best_threshold: no event among %d scored rows; returning 0.5", event.size)
        return 0.5, 0.0
    order = np.argsort(-prob, kind="stable")  # highest probability first
    prob_sorted = prob[order]  # [n]
    tp = np.cumsum(event[order])  # [n] alarms at threshold = prob_sorted[i] are rows 0..i ...
    fp = np.arange(1, prob.size + 1) - tp
    # ... but only at the last row of a run of equal probabilities (ties alarm together).
    last_of_value = np.append(prob_sorted[1:] != prob_sorted[:-1], True)
    f1 = np.where(last_of_value, 2 * tp / (2 * tp + fp + (n_events - tp)), -1.0)  # [n]
    best = int(np.argmax(f1))  # first maximum = highest threshold among ties
    return float(prob_sorted[best]), float(f1[best])


def episode_starts(event_true: np.ndarray, zone_codes: np.ndarray) -> np.ndarray:
    """Row indices where a delay episode starts: an event row whose previous row is not an event
    of the same zone (or which is its zone's first row). NaN targets count as "not an event"."""
    event = np.nan_to_num(np.asarray(event_true, dtype=np.float64).reshape(-1), nan=0.0) == 1  # [N]
    zone_codes = np.asarray(zone_codes).reshape(-1)
    if zone_codes.shape != event.shape:
        raise ValueError(
            f"event_true and zone_codes must have the same length. "
            f"Received: {event.size} and {zone_codes.size}"
        )
    new_zone = np.ones(event.size, dtype=bool)
    new_zone[1:] = zone_codes[1:] != zone_codes[:-1]
    prev_event = np.zeros(event.size, dtype=bool)
    prev_event[1:] = event[:-1]
    return np.flatnonzero(event & (new_zone | ~prev_event))


def lead_times(event_true: np.ndarray, alarm: np.ndarray, zone_codes: np.ndarray) -> np.ndarray:
    """Minutes of warning the alarm gave before each delay episode; NaN for an episode it missed.

    The series is given in (zone, time) order, one row per minute and no gap inside a zone (pass a
    segment id that changes at a gap as `zone_codes` when the data has gaps).

    What "episode start" means: the label at row t concerns minutes t+1 … t+horizon, so an
    *episode* is a maximal run of consecutive event rows of one zone, and its *start* is its
    first row s: the first minute at which the coming `horizon` minutes are, on average, late
    beyond the SLA. It is a forecast time, not the minute the delay is first observed (that is
    somewhere in s+1 … s+horizon); a lead of 0 therefore still means a warning before the delay.

    The lead of the episode starting at s is s − a, where a is the first row of the unbroken run
    of alarm rows (same zone) that reaches s: 0 if the alarm is raised exactly at s, k if it was
    raised k minutes earlier and stayed up. If the alarm is down at s the episode is missed: NaN.
    (An alarm raised only after s does not count: it is late.) An episode at a zone's first row
    is left-censored: its lead counts only alarms from that row on.

    Args:
        event_true: [N] delay_event (0/1, NaN counts as not an event).
        alarm: [N] bool (or 0/1) alarms, e.g. `prob >= threshold`.
        zone_codes: [N] zone (or segment) id of each row.

    Returns:
        [episodes] float lead times in minutes, in row order, NaN where missed.
    """
    alarm = np.asarray(alarm).reshape(-1)
    if alarm.dtype != bool:
        alarm = np.nan_to_num(alarm.astype(np.float64), nan=0.0) != 0
    zone_codes = np.asarray(zone_codes).reshape(-1)
    starts = episode_starts(event_true, zone_codes)  # [E]
    if alarm.shape != zone_codes.shape:
        raise ValueError(
            f"alarm and zone_codes must have the same length. Received: {alarm.size} and {zone_codes.size}"
        )
    rows = np.arange(alarm.size)
    new_zone = np.ones(alarm.size, dtype=bool)
    new_zone[1:] = zone_codes[1:] != zone_codes[:-1]
    prev_alarm = np.zeros(alarm.size, dtype=bool)
    prev_alarm[1:] = alarm[:-1]
    run_begins = alarm & (new_zone | ~prev_alarm)  # [N] first row of each alarm run
    run_start = np.maximum.accumulate(np.where(run_begins, rows, 0))  # [N] valid where alarm
    return np.where(alarm[starts], (starts - run_start[starts]).astype(np.float64), np.nan)


def lead_time_summary(leads: np.ndarray) -> dict[str, float]:
    """Summary of `lead_times`: episodes, caught (alarm up at the start), caught_fraction, and the
    median and mean lead (minutes) over the caught episodes (NaN when none was caught)."""
    leads = np.asarray(leads, dtype=np.float64).reshape(-1)
    caught = leads[~np.isnan(leads)]
    episodes = int(leads.size)
    return {
        "episodes": episodes,
        "caught": int(caught.size),
        "caught_fraction": caught.size / episodes if episodes else math.nan,
        "median_lead_min": float(np.median(caught)) if caught.size else math.nan,
        "mean_lead_min": float(np.mean(caught)) if caught.size else math.nan,
    }


# ---------------------------------------------------------------------------------------------
# Lead time: warnings before the delay (DESIGN §1, the `lead` object of DESIGN §8)
# ---------------------------------------------------------------------------------------------
#
# Inputs are in (segment, time) order, one row per minute; `segments` [N] is an id that changes
# at a zone change and at a gap, so a segment is an unbroken run of one zone's minutes.
#
# - `event` [N] 0/1/NaN: the label of the window ending at row t (mean delay over t+1..t+H above
#   the SLA). An *episode* is a maximal run of event == 1 rows inside one segment (NaN is not an
#   event and breaks a run); start s, end e (inclusive).
# - `minute_delay_s` [N]: the minute's own transport delay (transport time carried forward minus
#   the zone's nominal), seconds. *Observed onset* o: the first row r in [s, min(e + H, segment
#   end)] with minute_delay_s[r] > sla_delay_s; if there is none, o = min(s + H, segment end).
#   No smoothing: one late minute is enough (NaN delays never exceed the SLA).
# - *Alarm runs*: maximal runs of alarm rows inside a segment.
# - *Credit window* of an episode: rows [s − W, o − 1] of its segment (clipped at the segment's
#   first row), W = `early_window` (default: the horizon). If an alarm row lies in it, the first
#   such row r gives the warning time a = max(start of r's alarm run, s − W), which is r itself
#   (a run reaching into the window from before is cut at the window's first row). Otherwise the
#   episode is *missed*.
# - Per episode: warned_at_start = a <= s; warned_before_onset = a exists (a < o always);
#   warned_5min_before_onset = o − a >= 5; lead_min = o − a (minutes of warning before the delay
#   is observed); lead_vs_start_min = s − a (negative when warned after the forecast start).
# - *False-alarm runs*: drop every alarm row lying in some episode's span [s − W, e + H] (same
#   segment) and every alarm row whose event is undefined (NaN: not scored); the alarm rows left
#   form maximal runs (consecutive rows, one segment), each one false-alarm run. Per zone-day:
#   runs / (rows scored / 1440), rows scored = rows whose event is defined.
# - Headline `lead_score`, NAB-style (Lavin & Ahmad 2015) adapted to forecasting: an episode
#   warned at or before s earns A_tp; warned at a with s < a < o earns A_tp·(o − a)/(o − s)
#   (linear decay to 0 at the observed onset); missed costs A_fn; each false-alarm *unit* costs
#   A_fp, where a false-alarm run of length m minutes counts ⌈m / H⌉ units (a standing alarm
#   re-demands the dispatcher's attention every horizon; NAB counts every flagged point outside
#   the windows, so an always-on detector must not pass for one false alarm between episodes).
#   raw = Σ A_tp·credit − A_fn·missed − A_fp·false_alarm_units, normalised as
#   100·(raw − raw_null)/(raw_perfect − raw_null) with raw_null = −A_fn·E (no alarm at all) and
#   raw_perfect = A_tp·E: the null detector scores 0, a perfect one 100, spam goes below 0; NaN
#   when there is no episode.

#: NAB-style application profiles: weight of a warned episode (tp), a missed one (fn) and a
#: false-alarm run (fp). "standard" is the headline.
LEAD_PROFILES: dict[str, dict[str, float]] = {
    "standard": {"tp": 1.0, "fn": 1.0, "fp": 0.25},
    "low_fp": {"tp": 1.0, "fn": 1.0, "fp": 0.5},
    "low_fn": {"tp": 1.0, "fn": 2.0, "fp": 0.25},
}
#: The headline metric's key in every metrics object (`lead_score` of the "standard" profile).
HEADLINE_METRIC = "lead_score"
#: Minutes of warning before the observed onset that count as "acting in time".
WARN_MINUTES = 5
MINUTES_PER_DAY = 1440

__all__ += [
    "LEAD_PROFILES",
    "HEADLINE_METRIC",
    "LeadEpisodes",
    "episodes",
    "observed_onsets",
    "episode_causes",
    "lead_episodes",
    "lead_score",
    "lead_summary",
    "lead_metrics",
    "best_lead_threshold",
    "lead_tradeoff",
    "policy_alarms",
    "lead_by_cause",
]


def policy_alarms(
    prob: np.ndarray, segments: np.ndarray | None, threshold: float, clear_ratio: float = 1.0,
    hold_min: int = 0,
) -> np.ndarray:
    """[N] bool alarm of a probability series [N] in (segment, time) order under an alarm policy
    (`fabray.alarm.AlarmPolicy`: raise at `threshold`, keep above `threshold · clear_ratio`, hold
    `hold_min` minutes after the last raise); `segments` [N] restarts the state where it changes
    (None: one segment). NaN probabilities never raise."""
    p = np.nan_to_num(np.asarray(prob, dtype=np.float64).reshape(-1), nan=-np.inf)  # [N]
    n = p.size
    if clear_ratio == 1.0 and hold_min == 0:  # a plain threshold
        return p >= threshold
    new_seg = np.ones(n, dtype=bool)
    if segments is not None:
        seg = np.asarray(segments).reshape(-1)
        if seg.size != n:
            raise ValueError(f"segments has {seg.size} rows, prob {n}")
        new_seg[1:] = seg[1:] != seg[:-1]
    else:
        new_seg[1:] = False
    idx = np.arange(n)
    raised = p >= threshold  # [N]
    keep = p >= threshold * clear_ratio  # [N] ⊇ raised
    # hysteresis: inside each run of `keep` (within a segment), on from its first raise on
    prev_keep = np.zeros(n, dtype=bool)
    prev_keep[1:] = keep[:-1]
    run_start = keep & (new_seg | ~prev_keep)
    run_first = np.maximum.accumulate(np.where(run_start, idx, 0))  # [N] start of the current run
    raises = np.cumsum(raised)  # [N]
    before_run = raises[run_first] - raised[run_first]  # raises before the run began
    hyst = keep & (raises - before_run > 0)
    # hold: minutes since the last raise within the segment
    seg_first = np.maximum.accumulate(np.where(new_seg, idx, 0))  # [N]
    last_raise = np.maximum.accumulate(np.where(raised, idx, -1))  # [N]
    held = (last_raise >= seg_first) & (idx - last_raise <= hold_min)
    return hyst | held


def _as_alarm(alarm: np.ndarray) -> np.ndarray:
    alarm = np.asarray(alarm).reshape(-1)
    if alarm.dtype != bool:
        alarm = np.nan_to_num(alarm.astype(np.float64), nan=0.0) != 0
    return alarm


def _check_lengths(n: int, **arrays: np.ndarray) -> None:
    for name, arr in arrays.items():
        if arr.shape[0] != n:
            raise ValueError(
                f"{name} must have one value per row of event. Received: {arr.shape[0]} values for {n} rows"
            )


def _segment_bounds(segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[N] first and last row index of each row's segment."""
    segments = np.asarray(segments).reshape(-1)
    n = segments.size
    rows = np.arange(n)
    new = np.ones(n, dtype=bool)
    new[1:] = segments[1:] != segments[:-1]
    last = np.ones(n, dtype=bool)
    last[:-1] = new[1:]
    seg_first = np.maximum.accumulate(np.where(new, rows, 0)) if n else rows  # [N]
    seg_last = np.minimum.accumulate(np.where(last, rows, n)[::-1])[::-1] if n else rows  # [N]
    return seg_first, seg_last


def _next_true(mask: np.ndarray) -> np.ndarray:
    """[N + 1] index of the first True at or after each row (N where none); entry N is N."""
    n = mask.size
    idx = np.where(mask, np.arange(n), n)
    out = np.empty(n + 1, dtype=np.int64)
    out[n] = n
    out[:n] = np.minimum.accumulate(idx[::-1])[::-1] if n else idx
    return out


def _event_mask(event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """event [N] 0/1/NaN → (is_event [N] bool, defined [N] bool)."""
    event = np.asarray(event, dtype=np.float64).reshape(-1)
    defined = ~np.isnan(event)
    _events(event[defined])  # raises on anything but 0/1
    return np.nan_to_num(event, nan=0.0) == 1, defined


def episodes(event: np.ndarray, segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Delay episodes: maximal runs of event == 1 rows inside one segment.

    Args:
        event: [N] delay_event of the window ending at each row, 0/1/NaN (NaN breaks a run).
        segments: [N] segment id (changes at a zone change and at a gap), rows in (segment, time)
            order.

    Returns:
        (starts [E], ends [E]): first and last row (inclusive) of each episode, in row order.
    """
    is_event, _ = _event_mask(event)
    segments = np.asarray(segments).reshape(-1)
    _check_lengths(is_event.size, segments=segments)
    n = is_event.size
    new_seg = np.ones(n, dtype=bool)
    new_seg[1:] = segments[1:] != segments[:-1]
    prev = np.zeros(n, dtype=bool)
    prev[1:] = is_event[:-1]
    nxt = np.zeros(n, dtype=bool)
    nxt[:-1] = is_event[1:]
    end_seg = np.ones(n, dtype=bool)
    end_seg[:-1] = new_seg[1:]
    starts = np.flatnonzero(is_event & (new_seg | ~prev))
    ends = np.flatnonzero(is_event & (end_seg | ~nxt))
    return starts, ends


def observed_onsets(
    starts: np.ndarray,
    ends: np.ndarray,
    segments: np.ndarray,
    minute_delay_s: np.ndarray,
    sla_delay_s: float,
    horizon: int,
) -> np.ndarray:
    """Observed onset of each episode: the first row r in [s, min(e + H, segment end)] whose own
    transport delay `minute_delay_s[r]` exceeds `sla_delay_s`; if none, min(s + H, segment end).

    No smoothing: a single late minute is the onset. NaN delays never exceed the SLA.

    Args:
        starts, ends: [E] episode rows from `episodes`.
        segments: [N] segment ids.
        minute_delay_s: [N] each minute's own transport delay, seconds.
        sla_delay_s: the SLA delay, seconds.
        horizon: H, minutes the label looks ahead.

    Returns:
        [E] int row index of each observed onset (s <= o <= segment end).
    """
    starts = np.asarray(starts, dtype=np.int64).reshape(-1)
    ends = np.asarray(ends, dtype=np.int64).reshape(-1)
    delay = np.asarray(minute_delay_s, dtype=np.float64).reshape(-1)
    _, seg_last = _segment_bounds(segments)
    _check_lengths(seg_last.size, minute_delay_s=delay)
    with np.errstate(invalid="ignore"):
        late = delay > sla_delay_s  # [N]
    nxt = _next_true(late)  # [N + 1]
    last = seg_last[starts] if starts.size else starts
    first_late = nxt[starts]  # [E]
    search_end = np.minimum(ends + horizon, last)
    fallback = np.minimum(starts + horizon, last)
    return np.where(first_late <= search_end, first_late, fallback).astype(np.int64)


def episode_causes(cause: np.ndarray | None, starts: np.ndarray, onsets: np.ndarray) -> np.ndarray:
    """Cause of each episode: the most common non-empty `cause` value over rows [s, o]
    ("unknown" if none; ties go to the value seen first). [E] object array of str."""
    starts = np.asarray(starts, dtype=np.int64).reshape(-1)
    onsets = np.asarray(onsets, dtype=np.int64).reshape(-1)
    out = np.full(starts.size, "unknown", dtype=object)
    if cause is None:
        return out
    cause = np.asarray(cause, dtype=object).reshape(-1)
    for i, (s, o) in enumerate(zip(starts, onsets)):
        values = [str(c) for c in cause[s : o + 1] if c is not None and c == c and str(c) != ""]
        if values:
            counts: dict[str, int] = {}
            for v in values:
                counts[v] = counts.get(v, 0) + 1
            out[i] = max(counts, key=counts.get)  # first maximum in insertion order
    return out


class LeadEpisodes:
    """Per-episode lead-time records of one alarm series (see the definitions above).

    Attributes (arrays of length E, the number of episodes, in row order):
        start, end, onset: int rows s, e, o.
        warned_at: int row a of the warning, −1 where missed.
        warned_at_start, warned_before_onset, warned_5min_before_onset: bool flags.
        lead_min: o − a (float, NaN where missed); lead_vs_start_min: s − a (NaN where missed).
        credit: NAB credit in [0, 1] of a warned episode (1 at or before s, linear to 0 at o),
            NaN where missed.
    And scalars: false_alarm_runs, false_alarm_minutes, false_alarm_units (Σ ⌈run length / H⌉),
    rows_scored, horizon, early_window.
    """

    def __init__(self, *, start, end, onset, warned_at, false_alarm_runs, rows_scored, horizon, early_window,
                 false_alarm_minutes=None, false_alarm_units=None):
        self.start = np.asarray(start, dtype=np.int64)  # [E]
        self.end = np.asarray(end, dtype=np.int64)  # [E]
        self.onset = np.asarray(onset, dtype=np.int64)  # [E]
        self.warned_at = np.asarray(warned_at, dtype=np.int64)  # [E]
        self.false_alarm_runs = int(false_alarm_runs)
        self.false_alarm_minutes = int(false_alarm_runs if false_alarm_minutes is None else false_alarm_minutes)
        self.false_alarm_units = int(false_alarm_runs if false_alarm_units is None else false_alarm_units)
        self.rows_scored = int(rows_scored)
        self.horizon = int(horizon)
        self.early_window = int(early_window)
        warned = self.warned_at >= 0
        a = self.warned_at.astype(np.float64)
        self.warned_before_onset = warned  # [E] bool
        self.warned_at_start = warned & (self.warned_at <= self.start)
        self.lead_min = np.where(warned, self.onset - a, np.nan)  # [E]
        self.lead_vs_start_min = np.where(warned, self.start - a, np.nan)  # [E]
        self.warned_5min_before_onset = warned & (self.lead_min >= WARN_MINUTES)
        span = np.maximum(self.onset - self.start, 1).astype(np.float64)
        decay = np.clip((self.onset - a) / span, 0.0, 1.0)
        self.credit = np.where(self.warned_at_start, 1.0, np.where(warned, decay, np.nan))  # [E]

    @property
    def n_episodes(self) -> int:
        return int(self.start.size)

    @property
    def zone_days(self) -> float:
        return self.rows_scored / MINUTES_PER_DAY

    def __repr__(self) -> str:
        return (
            f"LeadEpisodes(episodes={self.n_episodes}, warned_at_start={int(self.warned_at_start.sum())}, "
            f"warned_before_onset={int(self.warned_before_onset.sum())}, false_alarm_runs={self.false_alarm_runs})"
        )


class _LeadFrame:
    """What does not depend on the alarm: episodes, onsets, credit windows, episode spans."""

    def __init__(self, event, segments, minute_delay_s, sla_delay_s, horizon, early_window):
        if horizon < 1:
            raise ValueError(f"horizon must be at least 1 minute. Received: horizon={horizon}")
        w = horizon if early_window is None else int(early_window)
        if w < 0:
            raise ValueError(f"early_window must be >= 0 minutes. Received: early_window={early_window}")
        self.is_event, self.defined = _event_mask(event)
        n = self.is_event.size
        self.segments = np.asarray(segments).reshape(-1)
        delay = np.asarray(minute_delay_s, dtype=np.float64).reshape(-1)
        _check_lengths(n, segments=self.segments, minute_delay_s=delay)
        self.n = n
        self.horizon, self.early_window = int(horizon), w
        self.seg_first, self.seg_last = _segment_bounds(self.segments)
        self.start, self.end = episodes(self.is_event.astype(np.float64), self.segments)
        self.onset = observed_onsets(self.start, self.end, self.segments, delay, sla_delay_s, horizon)
        first = self.seg_first[self.start] if self.start.size else self.start
        last = self.seg_last[self.start] if self.start.size else self.start
        self.window_lo = np.maximum(self.start - w, first)  # [E] credit window [lo, hi]
        self.window_hi = self.onset - 1  # [E]
        # [N] rows inside some episode's span [s − W, e + H] (clipped to the segment)
        span_hi = np.minimum(self.end + horizon, last)
        cover = np.zeros(n + 1, dtype=np.int64)
        np.add.at(cover, self.window_lo, 1)
        np.add.at(cover, span_hi + 1, -1)
        self.in_span = np.cumsum(cover[:n]) > 0
        self.new_seg = np.ones(n, dtype=bool)
        self.new_seg[1:] = self.segments[1:] != self.segments[:-1]
        self.rows_scored = int(self.defined.sum())

    def score(self, alarm: np.ndarray) -> LeadEpisodes:
        alarm = _as_alarm(alarm)
        _check_lengths(self.n, alarm=alarm)
        nxt = _next_true(alarm)  # [N + 1]
        r = nxt[self.window_lo] if self.start.size else self.start  # [E] first alarm row >= lo
        warned_at = np.where(r <= self.window_hi, r, -1)
        fa = alarm & self.defined & ~self.in_span  # [N]
        prev = np.zeros(self.n, dtype=bool)
        prev[1:] = fa[:-1]
        run_begins = fa & (self.new_seg | ~prev)  # [N]
        runs = int(np.sum(run_begins))
        lengths = np.bincount(np.cumsum(run_begins)[fa] - 1, minlength=runs) if runs else np.zeros(0, np.int64)
        return LeadEpisodes(
            start=self.start, end=self.end, onset=self.onset, warned_at=warned_at,
            false_alarm_runs=runs, false_alarm_minutes=int(fa.sum()),
            false_alarm_units=int(np.sum(-(-lengths // self.horizon))), rows_scored=self.rows_scored,
            horizon=self.horizon, early_window=self.early_window,
        )


def lead_episodes(
    event: np.ndarray,
    alarm: np.ndarray,
    segments: np.ndarray,
    minute_delay_s: np.ndarray,
    sla_delay_s: float,
    horizon: int,
    early_window: int | None = None,
) -> LeadEpisodes:
    """Per-episode warning records of `alarm` (definitions in the comment block above).

    Args:
        event: [N] delay_event, 0/1/NaN.
        alarm: [N] bool (or 0/1) alarm of each row, e.g. `prob >= threshold`.
        segments: [N] segment id, rows in (segment, time) order.
        minute_delay_s: [N] each minute's own transport delay, seconds.
        sla_delay_s: SLA delay, seconds.
        horizon: H, minutes the label looks ahead.
        early_window: W, minutes before the start that still earn credit (default H).

    Returns:
        `LeadEpisodes`: start, end, onset, warned_at, flags, lead_min, lead_vs_start_min, credit,
        false_alarm_runs, rows_scored.
    """
    return _LeadFrame(event, segments, minute_delay_s, sla_delay_s, horizon, early_window).score(alarm)


def lead_score(records: LeadEpisodes, profile: str = "standard") -> float:
    """NAB-style normalised lead score of `records` under `profile` (a key of `LEAD_PROFILES`):
    100·(raw − raw_null)/(raw_perfect − raw_null); null detector 0, perfect 100; NaN with no
    episode. raw = Σ A_tp·credit (warned) − A_fn·missed − A_fp·false_alarm_units."""
    if profile not in LEAD_PROFILES:
        raise ValueError(f"profile must be one of {sorted(LEAD_PROFILES)}. Received: profile={profile!r}")
    weights = LEAD_PROFILES[profile]
    e = records.n_episodes
    if e == 0:
        return math.nan
    warned = records.warned_before_onset
    raw = (
        weights["tp"] * float(np.sum(records.credit[warned]))
        - weights["fn"] * float(np.sum(~warned))
        - weights["fp"] * records.false_alarm_units
    )
    raw_null = -weights["fn"] * e
    raw_perfect = weights["tp"] * e
    return 100.0 * (raw - raw_null) / (raw_perfect - raw_null)


def _median(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(np.median(x)) if x.size else math.nan


def lead_summary(records: LeadEpisodes) -> dict[str, float]:
    """The `lead` object (DESIGN §8) of `records`, with the lead scores of every profile."""
    e = records.n_episodes
    counts = {
        "warned_at_start": int(records.warned_at_start.sum()),
        "warned_before_onset": int(records.warned_before_onset.sum()),
        "warned_5min_before_onset": int(records.warned_5min_before_onset.sum()),
    }
    out: dict[str, float] = {"episodes": e, **counts}
    for key, count in counts.items():
        out[f"{key}_fraction"] = count / e if e else math.nan
    out["median_lead_min"] = _median(records.lead_min)
    out["median_lead_vs_start_min"] = _median(records.lead_vs_start_min)
    out["false_alarm_runs"] = records.false_alarm_runs
    out["false_alarm_minutes"] = records.false_alarm_minutes
    out["false_alarm_units"] = records.false_alarm_units
    out["zone_days"] = records.zone_days
    out["false_alarm_runs_per_zone_day"] = (
        records.false_alarm_runs / records.zone_days if records.rows_scored else math.nan
    )
    out["lead_score"] = lead_score(records, "standard")
    for profile in LEAD_PROFILES:
        if profile != "standard":
            out[f"lead_score_{profile}"] = lead_score(records, profile)
    out["horizon"] = records.horizon
    out["early_window"] = records.early_window
    return out


def lead_metrics(
    event: np.ndarray,
    alarm: np.ndarray,
    segments: np.ndarray,
    minute_delay_s: np.ndarray,
    sla_delay_s: float,
    horizon: int,
    early_window: int | None = None,
) -> dict[str, float]:
    """The `lead` object (DESIGN §8) of an alarm series: episodes, warned_at_start,
    warned_before_onset, warned_5min_before_onset (counts) and their `_fraction`s,
    median_lead_min (median o − a over warned episodes, NaN if none), median_lead_vs_start_min
    (s − a), false_alarm_runs, zone_days, false_alarm_runs_per_zone_day, lead_score (standard
    profile), lead_score_low_fp, lead_score_low_fn, horizon, early_window.
    Arguments as `lead_episodes`."""
    return lead_summary(lead_episodes(event, alarm, segments, minute_delay_s, sla_delay_s, horizon, early_window))


def _threshold_grid(frame: _LeadFrame, prob: np.ndarray, candidates: int) -> np.ndarray:
    """Candidate thresholds, high → low: the distinct values among `candidates + 1` evenly spaced
    quantiles (0 … 1, "lower" method, so each is an observed probability) of the probabilities on
    rows whose event is defined."""
    scored = prob[frame.defined]
    if not np.isfinite(scored).all():
        raise ValueError("probabilities must be finite where the event is defined. Received: NaN/inf")
    levels = np.linspace(0.0, 1.0, max(int(candidates), 1) + 1)
    return np.unique(np.clip(np.quantile(scored, levels, method="lower"), 0.0, 1.0))[::-1]


def _threshold_scan(frame: _LeadFrame, prob: np.ndarray, candidates: int, clear_ratio: float,
                    hold_min: int) -> Iterator[tuple[float, "LeadEpisodes"]]:
    """(threshold, LeadEpisodes) for each candidate threshold, high → low, under the policy
    (threshold, clear_ratio, hold_min). The probabilities are checked before the first item."""
    prob = np.asarray(prob, dtype=np.float64).reshape(-1)
    _check_lengths(frame.n, prob=prob)
    grid = _threshold_grid(frame, prob, candidates) if frame.rows_scored else np.zeros(0)
    prob_filled = np.nan_to_num(prob, nan=-np.inf)

    def scan():
        for thr in grid:
            yield float(thr), frame.score(policy_alarms(prob_filled, frame.segments, float(thr), clear_ratio, hold_min))

    return scan()


def lead_tradeoff(
    event: np.ndarray,
    prob: np.ndarray,
    segments: np.ndarray,
    minute_delay_s: np.ndarray,
    sla_delay_s: float,
    horizon: int,
    candidates: int = 100,
    early_window: int | None = None,
    clear_ratio: float = 1.0,
    hold_min: int = 0,
) -> dict[str, np.ndarray]:
    """The early-warning trade-off of a probability series over its thresholds: what a site gets
    for each false-alarm rate it tolerates (the lead-time analogue of a precision-recall curve).

    For each candidate threshold (as `best_lead_threshold`'s, high → low), the alarm of the policy
    (threshold, `clear_ratio`, `hold_min`) scored by `lead_episodes`. Returns arrays [K]:
    threshold, false_alarm_runs_per_zone_day, warned_at_start_fraction,
    warned_before_onset_fraction, lead_score (standard profile). Empty arrays with no scored row;
    fractions and scores NaN with no episode.
    """
    frame = _LeadFrame(event, segments, minute_delay_s, sla_delay_s, horizon, early_window)
    rows = []
    for thr, rec in _threshold_scan(frame, prob, candidates, clear_ratio, hold_min):
        e = rec.n_episodes
        rows.append((
            float(thr), rec.false_alarm_runs / rec.zone_days,
            float(rec.warned_at_start.sum()) / e if e else math.nan,
            float(rec.warned_before_onset.sum()) / e if e else math.nan,
            lead_score(rec) if e else math.nan,
        ))
    keys = ("threshold", "false_alarm_runs_per_zone_day", "warned_at_start_fraction",
            "warned_before_onset_fraction", "lead_score")
    cols = list(zip(*rows)) if rows else [()] * len(keys)
    return {k: np.asarray(c, dtype=np.float64) for k, c in zip(keys, cols)}


def best_lead_threshold(
    event: np.ndarray,
    prob: np.ndarray,
    segments: np.ndarray,
    minute_delay_s: np.ndarray,
    sla_delay_s: float,
    horizon: int,
    profile: str = "standard",
    candidates: int = 100,
    early_window: int | None = None,
    clear_ratio: float = 1.0,
    hold_min: int = 0,
    max_false_alarms_per_zone_day: float | None = None,
) -> tuple[float, float]:
    """The threshold (alarm where `prob >= threshold`) that maximises `lead_score` under
    `profile`, and that score. `clear_ratio` / `hold_min` < 1 / > 0: the alarm is that of
    `fabray.alarm.AlarmPolicy(threshold, clear_ratio, hold_min)` (hysteresis, hold) instead.

    `max_false_alarms_per_zone_day`: the site's false-alarm budget. Only thresholds whose
    false-alarm runs per zone-day stay within it are eligible; when none does, the highest
    candidate (fewest alarms) is returned, with its score, and a warning is logged.

    Candidates are the distinct values among `candidates + 1` evenly spaced quantiles (0 … 1,
    "lower" method, so each is an observed probability) of the probabilities on rows whose event
    is defined: every candidate alarms at least once, and "never alarm" (score 0) is not offered.
    Ties go to the highest threshold (fewest alarms). With no episode (the score is NaN
    everywhere) or no defined row: returns (0.5, NaN).
    """
    frame = _LeadFrame(event, segments, minute_delay_s, sla_delay_s, horizon, early_window)
    scan = _threshold_scan(frame, prob, candidates, clear_ratio, hold_min)  # checks prob first
    if frame.start.size == 0 or frame.rows_scored == 0:
        logger.warning("best_lead_threshold: no delay episode among %d scored rows; returning 0.5",
                       frame.rows_scored)
        return 0.5, math.nan
    budget = math.inf if max_false_alarms_per_zone_day is None else float(max_false_alarms_per_zone_day)
    if not budget >= 0:
        raise ValueError(f"max_false_alarms_per_zone_day must be >= 0. Received: {max_false_alarms_per_zone_day}")
    best_thr, best = 0.5, -math.inf
    fallback: tuple[float, float] | None = None
    for thr, records in scan:
        score = lead_score(records, profile)
        if fallback is None:
            fallback = (float(thr), float(score))
        if records.false_alarm_runs / records.zone_days > budget:
            continue
        if score > best:  # strict: the first (highest) threshold keeps ties
            best_thr, best = float(thr), score
    if best == -math.inf and fallback is not None:
        logger.warning("best_lead_threshold: no threshold keeps false alarms within %.3g per zone-day; "
                       "returning the highest one (%.4g)", budget, fallback[0])
        return fallback
    return best_thr, float(best)


def lead_by_cause(records: LeadEpisodes, episode_causes: np.ndarray) -> dict[str, dict[str, float]]:
    """Warned counts and fractions per episode cause: {cause: {episodes, warned_at_start,
    warned_before_onset, warned_5min_before_onset, *_fraction}}, causes sorted by name.

    Args:
        records: from `lead_episodes`.
        episode_causes: [E] cause of each episode (e.g. from `episode_causes`).
    """
    causes = np.asarray(episode_causes, dtype=object).reshape(-1)
    if causes.size != records.n_episodes:
        raise ValueError(
            f"episode_causes must have one value per episode. Received: {causes.size} for {records.n_episodes} episodes"
        )
    out: dict[str, dict[str, float]] = {}
    for cause in sorted({str(c) for c in causes}):
        sel = np.array([str(c) == cause for c in causes], dtype=bool)
        e = int(sel.sum())
        row: dict[str, float] = {"episodes": e}
        for key in ("warned_at_start", "warned_before_onset", "warned_5min_before_onset"):
            row[key] = int(getattr(records, key)[sel].sum())
        for key in ("warned_at_start", "warned_before_onset", "warned_5min_before_onset"):
            row[f"{key}_fraction"] = row[key] / e
        out[cause] = row
    return out
