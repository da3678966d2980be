"""Read untrusted zip bundles safely: every limit is checked before anything is decompressed.

Why this much care: bundles come from other people's machines. Voicebox read the whole upload into memory and
called ``zip.read()`` on every entry, so one small zip of zeros could exhaust a worker. Here the central
directory is sized from the end record before ``zipfile`` parses it, names and types are checked, declared
sizes are bounded (entry count, total, per-entry ratio), and extraction counts the bytes it actually gets, so a
lying header cannot push past the limits either.
"""

from __future__ import annotations

import json
import os
import stat
import struct
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from backend.services.errors import PayloadTooLargeError, ValidationError

CHUNK = 1024 * 1024
_EOCD = struct.Struct("<4s4H2LH")
_EOCD_SIG = b"PK\x05\x06"
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_LOCATOR_SIG = b"PK\x06\x07"
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_ZIP64_EOCD_SIG = b"PK\x06\x06"
_SUPPORTED_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}


@dataclass(frozen=True)
class ZipLimits:
    max_entries: int = 10_000
    max_total_uncompressed: int = 5 * 1024**3
    max_entry_uncompressed: int = 1024**3
    max_ratio: float = 200.0
    #: entries smaller than this are not ratio-checked (JSON compresses well)
    ratio_floor: int = 1024 * 1024
    max_central_directory: int = 32 * 1024 * 1024


def _central_directory(fp, size: int) -> tuple[int, int]:
    """(entry count, central directory size) from the end record, without letting zipfile parse anything."""
    tail_len = min(size, _EOCD.size + 65535)
    fp.seek(size - tail_len)
    tail = fp.read(tail_len)
    pos = tail.rfind(_EOCD_SIG)
    if pos < 0 or len(tail) - pos < _EOCD.size:
        raise ValidationError("the file is not a zip archive, or it is truncated (no end record)")
    _, _, _, _, entries, cd_size, _, _ = _EOCD.unpack(tail[pos : pos + _EOCD.size])
    if (entries == 0xFFFF or cd_size == 0xFFFFFFFF) and pos >= _ZIP64_LOCATOR.size:
        loc = tail[pos - _ZIP64_LOCATOR.size : pos]
        sig, _, z64_offset, _ = _ZIP64_LOCATOR.unpack(loc)
        if sig == _ZIP64_LOCATOR_SIG and z64_offset + _ZIP64_EOCD.size <= size:
            fp.seek(z64_offset)
            rec = fp.read(_ZIP64_EOCD.size)
            if len(rec) == _ZIP64_EOCD.size and rec[:4] == _ZIP64_EOCD_SIG:
                fields = _ZIP64_EOCD.unpack(rec)
                entries, cd_size = fields[7], fields[8]
    return entries, cd_size


def check_entry_name(name: str) -> None:
    """Refuse names that could leave a folder or mean two things: absolute, ``..``, backslashes, drives."""
    bad = (
        not name
        or "\\" in name
        or "\x00" in name
        or name.startswith("/")
        or (len(name) > 1 and name[1] == ":")
        or len(name) > 512
    )
    parts = PurePosixPath(name.rstrip("/")).parts if not bad else ()
    if bad or not parts or any(part in ("", ".", "..") for part in parts) or "//" in name:
        raise ValidationError(
            f"unsafe entry name {name!r} in the bundle (absolute paths, '..', backslashes and drive "
            "letters are refused)"
        )


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return info.create_system == 3 and stat.S_ISLNK(mode)


class SafeZip:
    """An opened, vetted bundle: ``names`` are unique, safe, regular files within every limit."""

    def __init__(self, path: Path, limits: ZipLimits | None = None) -> None:
        self.path = path
        self.limits = limits or ZipLimits()
        self._zip: zipfile.ZipFile | None = None
        self.entries: dict[str, zipfile.ZipInfo] = {}
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        limits = self.limits
        size = os.path.getsize(self.path)
        with open(self.path, "rb") as fp:
            entries, cd_size = _central_directory(fp, size)
        if entries > limits.max_entries:
            raise ValidationError(
                f"the bundle has {entries} entries; at most {limits.max_entries} are accepted"
            )
        if cd_size > limits.max_central_directory:
            raise ValidationError("the bundle's central directory is implausibly large")
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise ValidationError(f"the file is not a readable zip archive: {exc}") from None
        infos = self._zip.infolist()
        if len(infos) > limits.max_entries:
            raise ValidationError(
                f"the bundle has {len(infos)} entries; at most {limits.max_entries} are accepted"
            )
        total = 0
        for info in infos:
            name = info.filename
            check_entry_name(name)
            if name in self.entries or (name.rstrip("/") + "/") in self.entries:
                raise ValidationError(
                    f"the bundle lists {name!r} twice; refusing an ambiguous bundle"
                )
            if _is_symlink(info):
                raise ValidationError(
                    f"the bundle entry {name!r} is a symbolic link; links are refused"
                )
            if info.flag_bits & 0x1:
                raise ValidationError(
                    f"the bundle entry {name!r} is encrypted; encryption is refused"
                )
            if info.is_dir():
                self.entries[name] = info
                continue
            if info.compress_type not in _SUPPORTED_METHODS:
                raise ValidationError(
                    f"the bundle entry {name!r} uses compression method {info.compress_type}; "
                    "only stored and deflate are accepted"
                )
            if info.file_size > limits.max_entry_uncompressed:
                raise PayloadTooLargeError(
                    f"the bundle entry {name!r} would be {info.file_size} bytes uncompressed; the limit "
                    f"is {limits.max_entry_uncompressed}"
                )
            if info.file_size > limits.ratio_floor and info.file_size > limits.max_ratio * max(
                info.compress_size, 1
            ):
                raise PayloadTooLargeError(
                    f"the bundle entry {name!r} compresses {info.file_size / max(info.compress_size, 1):.0f}"
                    f"x; more than {limits.max_ratio:g}x is treated as a zip bomb"
                )
            total += info.file_size
            if total > limits.max_total_uncompressed:
                raise PayloadTooLargeError(
                    "the bundle would be more than "
                    f"{limits.max_total_uncompressed // (1024 * 1024)} MB uncompressed"
                )
            self.entries[name] = info
        self.total_uncompressed = total

    # ------------------------------------------------------------------------------------------ access
    def has(self, name: str) -> bool:
        info = self.entries.get(name)
        return info is not None and not info.is_dir()

    def files(self, prefix: str = "") -> list[str]:
        return sorted(n for n, i in self.entries.items() if not i.is_dir() and n.startswith(prefix))

    def _chunks(self, name: str, limit: int) -> Iterable[bytes]:
        info = self.entries.get(name)
        if info is None or info.is_dir():
            raise ValidationError(f"the bundle has no file {name!r}")
        assert self._zip is not None
        cap = min(limit, info.file_size)
        got = 0
        try:
            with self._zip.open(info) as handle:
                while True:
                    chunk = handle.read(CHUNK)
                    if not chunk:
                        break
                    got += len(chunk)
                    if got > cap:
                        if got > info.file_size:
                            raise ValidationError(
                                f"the bundle entry {name!r} is larger than its header says; refused"
                            )
                        raise PayloadTooLargeError(
                            f"the bundle entry {name!r} is over the {limit} byte limit for its kind"
                        )
                    yield chunk
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
            raise ValidationError(f"the bundle entry {name!r} is damaged: {exc}") from None
        except RuntimeError as exc:  # zipfile raises this for encryption and some format errors
            raise ValidationError(f"the bundle entry {name!r} cannot be read: {exc}") from None

    def read_bytes(self, name: str, limit: int) -> bytes:
        return b"".join(self._chunks(name, limit))

    def read_json(self, name: str, limit: int = 8 * 1024 * 1024) -> object:
        raw = self.read_bytes(name, limit)
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValidationError(f"{name} in the bundle is not valid JSON: {exc}") from None

    def extract(self, name: str, dest: Path, limit: int) -> int:
        """Stream one entry to ``dest``; returns the bytes written."""
        written = 0
        with open(dest, "wb") as out:
            for chunk in self._chunks(name, limit):
                out.write(chunk)
                written += len(chunk)
        return written

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def __enter__(self) -> SafeZip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
