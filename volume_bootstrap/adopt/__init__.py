"""Adopt a legacy Voicebox database — and the data directory around it — into the volume.

Why this exists: people arrive with a ``voicebox.db`` from the desktop app (upstream) or from the RunPod fork's
image, and the issue's promise is that it is taken as is, with nothing lost. Voicebox has no schema version (it
migrates by column checks and ``create_all``), so the databases in the wild differ. Three are known
(their differences are listed below):

``fork``      the RunPod fork: absolute paths under ``/app/data``, a ``generation_jobs`` queue table, soft deleted
              generations (``deleted_at``), ``audio_path``/``duration`` NOT NULL, ``request_*`` columns.
``upstream``  jamiepine/voicebox: relative paths (sometimes with a legacy ``data/`` prefix), ``status``
              (generating | loading_model | completed | failed), ``generation_versions``, extra profile columns
              and tables (effects, stories, channels, captures, MCP bindings).
``fork-old``  the fork before ``generations.instruct`` and ``profiles.avatar_path`` existed.

How (``adopt_database_file``, in ``database_file``): one ``BEGIN IMMEDIATE`` transaction on the file (DDL included, see
``migrations.runner.migration_engine``) reads every row, counts every table, drops the legacy tables,
creates our schema by running the baseline migration itself (so the result *is* ``0001_baseline``, stamped in
the same transaction), inserts the converted rows, and checks the schema and foreign keys before committing. A
kill anywhere leaves the journal to roll the file back to the legacy database. Afterwards the file is compared with
a database built by the baseline migration and, while the baseline is head, with the models
(``schema_differences``). The caller (``migrate_volume`` or ``adopt_data_dir``) then upgrades to head.

Conversion rules (each reported, nothing silently lost):
- Paths become relative to ``<volume>/voicebox``: ``/app/data/``, the legacy data dir, ``<volume>/voicebox/`` or
  a leading ``data/`` are stripped; otherwise the path is cut where its ``profiles/`` or ``generations/`` part
  starts (after a component named ``data`` when there is one). A path with ``..`` or none of those parts is
  refused: the adoption stops and names the rows.
- Fork rows are ``completed``; upstream rows that were still ``generating``/``loading_model`` (or had no final
  status) become ``failed`` with an error saying adoption found them unfinished; their path, if any, is reported.
- Soft deleted fork generations stay out of history; they are reported with their paths and their files are not
  adopted (with ``--move`` they stay in the legacy data dir).
- Upstream's default ``generation_versions`` row gives the generation its ``audio_path``; every version, effect
  preset, profile effects chain, story and story item is carried too (``extras``, ``carried``: the rows are
  inserted after an in-transaction upgrade to ``0004``, the version files copied byte-identical).
- Columns and tables that have no place in our schema (profile voice types, request metadata, jobs, channels,
  capture settings …) are dropped only after being counted; the report lists them.
- ``profile_name`` is filled from the profile; a generation whose profile is gone keeps its row with a NULL
  ``profile_id``; a sample whose profile is gone cannot exist in our schema and is reported, not adopted.

Files (``adopt_data_dir``, in ``data_dir``; copies in ``files``): every file a kept row references is copied — or with ``move=True`` copied, then
removed from the source once the database is published — keeping its relative structure:
``profiles/<pid>/<file>`` and ``generations/<file>`` as the legacy app named them (the fork names generation
files after the job id, not the row id; upstream uses ``<gen>.wav`` / ``<gen>_processed.wav``). Keeping the names
means the relative path in the row is the same whether a database was adopted with its data dir or found on the
volume at boot next to files an operator copied there. Files are written atomically (``BlobStore``) and their
sha256 and size go into the rows. If anything fails, nothing is published and the files this run created are
removed; a kill after copying leaves only unreferenced files, which ``volume fsck`` moves to trash after its grace
period (and a rerun reuses identical ones).

At boot (a legacy ``voicebox.db`` found at the volume's database path, files copied beside it by an operator) the
rows get sizes and durations but no sha256: hashing every file under the lease would hold peers' cold starts. Files
of rows that were not adopted (soft deleted, versions of unfinished generations) stay on the volume unreferenced,
listed in the report; ``volume fsck`` later moves them to ``trash/`` — never deletes them.

The modules, each importing only those above it: ``errors``; ``values`` (single values, paths); ``legacy``
(reading and recognising the legacy file); ``extras`` (the carried tables' rules and inserts); ``plan`` (the
converted rows, ``RowConverter``); ``carried`` (converting versions, presets, stories); ``planning``
(``build_plan``); ``files``; ``schema`` (the baseline signature); ``database_file``; ``report``; ``data_dir``.
"""

from volume_bootstrap.adopt.data_dir import adopt_data_dir, snapshot_database
from volume_bootstrap.adopt.database_file import adopt_database_file
from volume_bootstrap.adopt.errors import AdoptionError, LegacySchemaError
from volume_bootstrap.adopt.extras import ADOPT_REVISION
from volume_bootstrap.adopt.legacy import LegacyLayout, inspect_legacy
from volume_bootstrap.adopt.plan import Plan
from volume_bootstrap.adopt.planning import build_plan
from volume_bootstrap.adopt.schema import BASELINE_REVISION, baseline_signature
from volume_bootstrap.adopt.values import parse_timestamp, relativize

__all__ = [
    "ADOPT_REVISION",
    "BASELINE_REVISION",
    "AdoptionError",
    "LegacyLayout",
    "LegacySchemaError",
    "Plan",
    "adopt_data_dir",
    "adopt_database_file",
    "baseline_signature",
    "build_plan",
    "inspect_legacy",
    "parse_timestamp",
    "relativize",
    "snapshot_database",
]
