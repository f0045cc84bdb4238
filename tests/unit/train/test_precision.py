"""The mixed-precision decision over fake device descriptions (no GPU needed)."""

from __future__ import annotations

import pytest

from fabray.train.precision import choose_precision

H100 = {"device_name": "NVIDIA H100 80GB HBM3", "compute_capability": (9, 0)}
V100 = {"device_name": "Tesla V100", "compute_capability": (7, 0)}
P100 = {"device_name": "Tesla P100", "compute_capability": (6, 0)}
T4_AS_STRING = {"device_name": "Tesla T4", "compute_capability": "7.5"}
UNKNOWN = {"device_name": "some GPU"}


@pytest.mark.parametrize(
    ("devices", "expected"),
    [
        ([], "float32"),  # CPU only
        ([H100], "mixed_float16"),
        ([V100], "mixed_float16"),  # exactly 7.0 qualifies
        ([T4_AS_STRING], "mixed_float16"),
        ([P100], "float32"),  # no tensor cores
        ([UNKNOWN], "float32"),  # capability unknown: stay safe
        ([H100, P100], "float32"),  # a mixed set runs at the slowest one's pace
        ([H100, H100], "mixed_float16"),
    ],
)
def test_auto_follows_the_visible_gpus(devices, expected):
    assert choose_precision("auto", devices) == expected


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_explicit_policy_is_kept_whatever_the_devices(policy):
    assert choose_precision(policy, []) == policy
    assert choose_precision(policy, [P100]) == policy


def test_unknown_policy_is_refused_with_what_was_received():
    with pytest.raises(ValueError, match="Received: 'fp16'"):
        choose_precision("fp16", [H100])
