"""The corpus of hostile bundles, against all three import routes: refused with a 4xx that names the problem,
and nothing written -- no new row, no new file, nothing left in ``voicebox/.tmp``, the shared database not
even republished.

Why all three routes: profile, generation and library imports share the zip guard (``zipguard.SafeZip``) but
each has its own planner, staging and write unit, so a guard skipped or a staged file leaked on one route would
not show on the others. Why a volume that already holds a profile and a generation: "nothing written" must
mean "nothing *new*", and a refused import must not touch what was there.

The corpus (docs/reliability.md has it as one table): zip slip by ``..``, absolute, backslash and drive-letter
names, symlink entries, duplicate names, a ratio zip bomb and a 1 GiB streamed-zeros bomb, declared sizes over
the total limit, 20,000 entries, a truncated zip, an encrypted entry, an unsupported compression method, a
header that lies about its entry's size, non-audio and too-short samples, an unknown manifest major version.
``test_api_bundles.py::test_hostile_bundles_are_refused_and_leave_nothing`` already runs eleven of them against
``/profiles/import`` (on an empty volume); those pairs are not repeated here, and
``test_corpus_is_complete`` fails if either side drops one.
"""

from __future__ import annotations

import functools
import io
import json
import os
import stat
import struct
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from backend.db.models import Generation, Profile, ProfileSample
from backend.services.container import Services
from tests.support.api import add_generation, audio_bytes, files_under, voicebox_v10_bundle

PROFILE_ID = "3f0c2a8e-9a51-4a5e-8d0c-5b7e2f7c1a10"
# Not the ids of the volume's existing sample (voicebox_v10_bundle's) or of each other: a library import skips
# sample ids already present without staging them, which would hide the defect under test.
SAMPLE_ID = "9c4b1a2d-3e5f-4a6b-8c7d-0e1f2a3b4c5d"
LIBRARY_SAMPLE_ID = "4d3c2b1a-0f9e-4d8c-b7a6-5f4e3d2c1b0a"
GENERATION_ID = "7e1d4c2b-0a9f-4e8d-b6c5-1f2e3d4c5b6a"

ROUTES = {
    "profile": "/profiles/import",
    "generation": "/history/import",
    "library": "/library/import",
}
#: Where each kind of bundle keeps the audio file the import stages and validates.
AUDIO_ENTRY = {
    "profile": f"samples/{SAMPLE_ID}.wav",
    "generation": "audio/take.wav",
    "library": f"profiles/{PROFILE_ID}/samples/{LIBRARY_SAMPLE_ID}.wav",
}

Entry = tuple[str | zipfile.ZipInfo, bytes]


# ---------------------------------------------------------------------------------------------- builders
def manifest_entries(kind: str, version: str | None = None) -> list[Entry]:
    """A well-formed manifest for ``kind`` whose one audio file is ``AUDIO_ENTRY[kind]``."""
    if kind == "profile":
        manifest: dict = {
            "version": version or "1.0",
            "profile": {"name": "Hostile", "description": None, "language": "en"},
            "has_avatar": False,
        }
        samples = {f"{SAMPLE_ID}.wav": "hello there"}
        return [
            ("manifest.json", json.dumps(manifest, indent=2).encode()),
            ("samples.json", json.dumps(samples).encode()),
        ]
    if kind == "generation":
        manifest = {
            "version": version or "1.0",
            "generation": {"id": GENERATION_ID, "text": "hello there", "language": "en"},
            "profile": {"name": "Hostile"},
            "versions": [{"id": "v1", "filename": "take.wav", "is_default": True}],
        }
        return [("manifest.json", json.dumps(manifest).encode())]
    manifest = {
        "version": version or "1.1",
        "kind": "library",
        "profiles": [
            {
                "profile": {"id": PROFILE_ID, "name": "Hostile", "language": "en"},
                "samples": [
                    {
                        "id": LIBRARY_SAMPLE_ID,
                        "file": AUDIO_ENTRY["library"],
                        "reference_text": "hi",
                    }
                ],
            }
        ],
        "generations": [],
    }
    return [("manifest.json", json.dumps(manifest).encode())]


def zip_of(entries: list[Entry], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name" is the point of one case
        with zipfile.ZipFile(buf, "w", method) as zf:
            for name, data in entries:
                zf.writestr(name, data)
    return buf.getvalue()


def bundle(kind: str, audio: bytes | None = None, *, version: str | None = None) -> bytes:
    """A bundle of ``kind`` that would import, but for ``audio`` (default: a valid 3 s clip)."""
    return zip_of(
        manifest_entries(kind, version) + [(AUDIO_ENTRY[kind], audio or audio_bytes(3.0))]
    )


def with_entries(kind: str, *extra: Entry) -> bytes:
    """The manifest of ``kind`` plus hand-made entries instead of its audio file."""
    return zip_of(manifest_entries(kind) + list(extra))


def info(name: str, **attrs: int) -> zipfile.ZipInfo:
    zinfo = zipfile.ZipInfo(name)
    zinfo.compress_type = zipfile.ZIP_DEFLATED
    for key, value in attrs.items():
        setattr(zinfo, key, value)
    return zinfo


def symlink(kind: str) -> bytes:
    link = info(AUDIO_ENTRY[kind], create_system=3, external_attr=(stat.S_IFLNK | 0o777) << 16)
    return with_entries(kind, (link, b"/etc/passwd"))


def encrypted(kind: str) -> bytes:
    """The audio entry flagged encrypted (bit 0); zipfile cannot write that, so the record is patched."""
    return patch_central(
        bundle(kind), lambda name: {"flags": 0x1} if name == AUDIO_ENTRY[kind] else None
    )


def bzip2(kind: str) -> bytes:
    return with_entries(
        kind, (info(AUDIO_ENTRY[kind], compress_type=zipfile.ZIP_BZIP2), audio_bytes(3.0))
    )


def duplicate(kind: str) -> bytes:
    return with_entries(
        kind, (AUDIO_ENTRY[kind], audio_bytes(3.0)), (AUDIO_ENTRY[kind], audio_bytes(3.0, seed=9))
    )


def streamed_zeros(kind: str, size: int, level: int = 6) -> bytes:
    """The audio entry as ``size`` zero bytes written in chunks (never held whole), after the manifest."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        for name, data in manifest_entries(kind):
            zf.writestr(name, data)
        chunk = b"\x00" * (4 * 1024 * 1024)
        with zf.open(AUDIO_ENTRY[kind], "w", force_zip64=size > 0x7FFFFFFF) as entry:
            for _ in range(size // len(chunk)):
                entry.write(chunk)
    return buf.getvalue()


def ratio_bomb(kind: str) -> bytes:
    """40 MiB of zeros (~1000:1): over the 200:1 ratio the guard allows for entries past 1 MiB."""
    return streamed_zeros(kind, 40 * 1024 * 1024)


def gib_bomb(kind: str) -> bytes:
    """1 GiB of zeros, a few MB compressed (level 1 keeps the build near 2 s): over the entry size limit."""
    return streamed_zeros(kind, 1024**3, level=1)


#: Central-directory record fields a case may rewrite: (offset in the record, struct format).
_CD_FIELDS = {"flags": (8, "<H"), "size": (24, "<L")}


def patch_central(data: bytes, change: Callable[[str], dict[str, int] | None]) -> bytes:
    """Rewrite fields of central-directory records (what zipfile and the guard read), by entry name."""
    raw = bytearray(data)
    eocd = raw.rfind(b"PK\x05\x06")
    count, _, cd_offset = struct.unpack_from("<HLL", raw, eocd + 10)
    pos = cd_offset
    for _ in range(count):
        assert raw[pos : pos + 4] == b"PK\x01\x02"
        nlen, elen, clen = struct.unpack_from("<3H", raw, pos + 28)
        name = bytes(raw[pos + 46 : pos + 46 + nlen]).decode()
        for field, value in (change(name) or {}).items():
            offset, fmt = _CD_FIELDS[field]
            struct.pack_into(fmt, raw, pos + offset, value)
        pos += 46 + nlen + elen + clen
    return bytes(raw)


def declared_total(kind: str) -> bytes:
    """5,100 empty entries each declaring exactly 1 MiB (not ratio-checked): 5.1 GB, over the 5000 MB total."""
    junk = [(f"junk/{i}", b"") for i in range(5100)]
    data = zip_of(manifest_entries(kind) + junk, zipfile.ZIP_STORED)
    return patch_central(data, lambda n: {"size": 1024 * 1024} if n.startswith("junk/") else None)


@functools.cache
def _many_entries() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(20_000):
            zf.writestr(f"junk/{i}", b"")
    return buf.getvalue()


def many_entries(kind: str) -> bytes:
    """20,000 entries (plus the manifest), over the 10,000 the guard counts from the end record."""
    buf = io.BytesIO(_many_entries())
    with zipfile.ZipFile(buf, "a") as zf:
        for name, data in manifest_entries(kind):
            zf.writestr(name, data)
    return buf.getvalue()


def lying_header(kind: str) -> bytes:
    """The audio entry inflates to 2 MiB but its header says 20,000 bytes: reading it must not be trusted."""
    data = zip_of(manifest_entries(kind) + [(AUDIO_ENTRY[kind], b"\x00" * (2 * 1024 * 1024))])
    return patch_central(data, lambda n: {"size": 20_000} if n == AUDIO_ENTRY[kind] else None)


# ---------------------------------------------------------------------------------------------- corpus
@dataclass(frozen=True)
class Case:
    build: Callable[[str], bytes]
    status: int
    needle: (
        str | Callable[[str], str]
    )  # in the answer's detail; a function of the kind when it varies
    kinds: tuple[str, ...] = ("profile", "generation", "library")

    def expected(self, kind: str) -> str:
        return self.needle(kind) if callable(self.needle) else self.needle


CORPUS: dict[str, Case] = {
    "zip-slip": Case(
        lambda k: with_entries(k, (f"{AUDIO_ENTRY[k].rsplit('/', 1)[0]}/../../x.wav", b"x")),
        400,
        "unsafe entry name",
    ),
    "absolute-name": Case(lambda k: with_entries(k, ("/etc/cron.d/x", b"x")), 400, "unsafe"),
    "backslash-name": Case(
        lambda k: with_entries(k, ("samples\\..\\..\\x.wav", b"x")), 400, "unsafe"
    ),
    "drive-letter": Case(lambda k: with_entries(k, ("C:/Windows/x.wav", b"x")), 400, "unsafe"),
    "symlink": Case(symlink, 400, "symbolic link"),
    "duplicate-names": Case(duplicate, 400, "twice"),
    "zip-bomb": Case(ratio_bomb, 413, "zip bomb"),
    "zip-bomb-1gib": Case(gib_bomb, 413, "1073741824 bytes uncompressed"),
    "declared-total-over-limit": Case(declared_total, 413, "MB uncompressed"),
    "too-many-entries": Case(many_entries, 400, "at most 10000 are accepted"),
    "truncated": Case(lambda k: bundle(k)[:-200], 400, "zip"),
    "encrypted-entry": Case(encrypted, 400, "encrypted"),
    "unsupported-compression": Case(bzip2, 400, "compression method 12"),
    "lying-header": Case(lying_header, 400, lambda k: AUDIO_ENTRY[k]),
    "non-audio-sample": Case(
        lambda k: bundle(k, b"RIFF not really a wav" * 30), 400, lambda k: AUDIO_ENTRY[k]
    ),
    # A generation's audio has no minimum length; a reference sample must be 2 s at least.
    "too-short-sample": Case(
        lambda k: bundle(k, audio_bytes(1.0)), 400, "at least 2", ("profile", "library")
    ),
    "unknown-major-version": Case(lambda k: bundle(k, version="2.0"), 400, "version 2.0"),
}

#: (case, kind) pairs run by ``test_api_bundles.py`` (its ``HOSTILE`` keys use the same names).
COVERED_IN_TEST_API_BUNDLES = {
    (name, "profile")
    for name in (
        "zip-slip",
        "absolute-name",
        "backslash-name",
        "symlink",
        "duplicate-names",
        "zip-bomb",
        "too-many-entries",
        "truncated",
        "non-audio-sample",
        "too-short-sample",
        "unknown-major-version",
    )
}

MATRIX = [
    (name, kind)
    for name, case in CORPUS.items()
    for kind in case.kinds
    if (name, kind) not in COVERED_IN_TEST_API_BUNDLES
]


def test_corpus_is_complete() -> None:
    """Every (case, route) pair runs somewhere: here, or in test_api_bundles under the same name."""
    from tests.test_api_bundles import HOSTILE

    for name in {n for n, _ in COVERED_IN_TEST_API_BUNDLES}:
        assert name in HOSTILE, f"{name} is no longer in test_api_bundles.HOSTILE: run it here"
    for name, case in CORPUS.items():
        for kind in case.kinds:
            assert (name, kind) in MATRIX or (name, kind) in COVERED_IN_TEST_API_BUNDLES


# ---------------------------------------------------------------------------------------------- the test
@dataclass(frozen=True)
class Snapshot:
    rows: dict[str, int]
    files: dict[str, list[str]]
    db: tuple[int, int, int]


def snapshot(services: Services) -> Snapshot:
    data = services.settings.data_dir
    with services.db.read() as session:
        rows = {
            model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Profile, ProfileSample, Generation)
        }
    files = {
        name: files_under(data / name) for name in ("profiles", "generations", "trash", ".tmp")
    }
    st = os.stat(services.settings.db_path)
    return Snapshot(rows, files, (st.st_ino, st.st_size, st.st_mtime_ns))


@pytest.fixture
def populated(api_client: TestClient, api_services: Services) -> Snapshot:
    """A volume that already holds a profile with a sample and a finished generation."""
    r = api_client.post(
        "/profiles/import",
        files={"file": ("b.zip", voicebox_v10_bundle(name="Existing"), "application/zip")},
    )
    assert r.status_code == 200, r.text
    add_generation(api_services, profile_id=r.json()["id"], profile_name="Existing")
    before = snapshot(api_services)
    assert before.rows == {"profiles": 1, "profile_samples": 1, "generations": 1}, before.rows
    return before


@pytest.mark.parametrize(("case", "kind"), MATRIX, ids=[f"{c}-{k}" for c, k in MATRIX])
def test_hostile_bundle_is_refused_and_writes_nothing(
    api_client: TestClient, api_services: Services, populated: Snapshot, case: str, kind: str
) -> None:
    spec = CORPUS[case]
    data = spec.build(kind)
    r = api_client.post(ROUTES[kind], files={"file": ("bundle.zip", data, "application/zip")})
    assert r.status_code == spec.status, (case, kind, r.status_code, r.text[:500])
    detail = r.json()["detail"]
    assert spec.expected(kind) in detail, (case, kind, detail)
    assert str(api_services.settings.volume) not in detail, (
        f"the answer names a server path: {detail}"
    )
    after = snapshot(api_services)
    assert after.rows == populated.rows, "a refused import added rows"
    assert after.files == populated.files, "a refused import left files on the volume"
    assert after.files[".tmp"] == [], "staged files were left in voicebox/.tmp"
    assert after.db == populated.db, "a refused import republished the shared database"


def test_valid_bundles_of_the_corpus_import(api_client: TestClient, api_services: Services) -> None:
    """The builders make importable bundles: each refusal above is caused by its defect, not the base."""
    for kind, route in ROUTES.items():
        r = api_client.post(route, files={"file": ("b.zip", bundle(kind), "application/zip")})
        assert r.status_code == 200, (kind, r.text)
    assert snapshot(api_services).rows == {"profiles": 2, "profile_samples": 2, "generations": 1}
