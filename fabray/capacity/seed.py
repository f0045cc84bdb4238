"""The seed's growth table (sections 3 and 7 of the GPU request): its models and its three
phases, with the memory and H100s it claims for each."""

from __future__ import annotations

from dataclasses import dataclass

from fabray.errors import BadInputError


#: The seed's five models (its 1.67M "ensemble total" is their sum); PatchTST comes at 1M rows.
SEED_MODELS = ("lstm", "gru", "cnn_lstm", "spike", "rule")


@dataclass(frozen=True)
class SeedPhase:
    """One column of the seed's growth table (sections 3 and 7 of the GPU request)."""

    phase: int
    stage: str
    data_rows: int
    model_params: int  # the seed's claimed total of the ensemble's models
    batch_size: int
    seed_memory_gb: float  # the seed's claimed "memory needed"
    seed_h100: int  # H100s the seed plans for the phase
    seed_plan: str


SEED_PHASES: tuple[SeedPhase, ...] = (
    SeedPhase(1, "now (POC), development", 781_163, 1_670_000, 32, 24.0, 1,
              "one H100 trains the 5 models"),
    SeedPhase(2, "+3 months, production", 1_000_000, 2_500_000, 64, 32.0, 2,
              "one H100 for development + one for production"),
    SeedPhase(3, "+6 months, production + expansion", 1_500_000, 4_000_000, 128, 48.0, 2,
              "two production H100s: real-time + batch + retraining at once"),
)


def seed_phase(phase: int) -> SeedPhase:
    for p in SEED_PHASES:
        if p.phase == phase:
            return p
    raise BadInputError(f"phase must be one of {[p.phase for p in SEED_PHASES]}. Received: phase={phase}")
