"""Why adoption stops: both errors mean nothing was published, and their messages say what to do."""

from __future__ import annotations

from backend.db.errors import DatabaseError, SchemaMismatchError


class AdoptionError(DatabaseError):
    """Adoption refused or failed; nothing was published. The message says what to do."""


class LegacySchemaError(SchemaMismatchError):
    """The database is not one of the known Voicebox schemas (partial, or not Voicebox at all)."""
