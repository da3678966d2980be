"""Profile, generation and library bundles: Voicebox's zip v1.0 read and written, our v1.1 by default.

``docs/api.md`` has the formats in full. The package, one job a module:

* ``manifest``: a manifest's version, kind and fields checked, and the import plans (``plans``) built from it;
* ``staging``: every file staged in ``voicebox/.tmp`` and validated, then one write unit that undoes its moves
  on failure;
* ``profiles``, ``generations``, ``library``: rows from staged plans, and the zips each kind is exported as
  (``writing``: what every export shares);
* ``service``: ``BundleService``, what routes and the CLI call; ``results``: what it hands back.
"""

from backend.services.bundles.manifest import (
    GENERATOR,
    VERSION_V10,
    VERSION_V11,
    bundle_kind,
    check_version,
)
from backend.services.bundles.plans import MAX_BUNDLE_VERSIONS
from backend.services.bundles.results import (
    ExportedFile,
    GenerationImport,
    ImportResult,
    Progress,
    VolumeExport,
)
from backend.services.bundles.service import BundleService

__all__ = [
    "GENERATOR",
    "MAX_BUNDLE_VERSIONS",
    "VERSION_V10",
    "VERSION_V11",
    "BundleService",
    "ExportedFile",
    "GenerationImport",
    "ImportResult",
    "Progress",
    "VolumeExport",
    "bundle_kind",
    "check_version",
]
