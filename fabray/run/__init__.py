"""The run directory's one owner (issue 10): layout, manifest, writer and reader.

- `fabray.run.layout`: where things live in RUN, a new run's directory, provenance, data cuts.
- `fabray.run.manifest`: the typed manifest (`RunManifest`, `format_version`), `write_manifest`
  (atomic, only when every listed file exists) and `read_manifest` (validated).
- `fabray.run.reader`: `Run.open(path, verify=True)`, the opened run whose `file(rel)` checks a
  listed file (inside the run, present, matching its checksum).
"""

from __future__ import annotations

from fabray.run.layout import (
    check_run_dir_free,
    code_version,
    create_run_dir,
    library_versions,
    model_dir,
    rows_before,
    until_text,
)
from fabray.run.manifest import (
    FILE_KEYS,
    MANIFEST,
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    RunManifest,
    collect_checksums,
    listed_files,
    load_manifest,
    read_manifest,
    validate_manifest,
    write_manifest,
)
from fabray.run.reader import Run

__all__ = [
    "FILE_KEYS", "MANIFEST", "MANIFEST_FORMAT", "MANIFEST_VERSION", "Run", "RunManifest",
    "check_run_dir_free", "code_version", "collect_checksums", "create_run_dir", "library_versions",
    "listed_files", "load_manifest", "model_dir", "read_manifest", "rows_before", "until_text", "validate_manifest",
    "write_manifest",
]
