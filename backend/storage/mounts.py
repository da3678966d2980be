"""Which mount holds a path (filesystem type, options): the probe and ``volume status`` report it, because the
volume's guarantees (atomic rename, fsync, locks) depend on the filesystem that serves it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class MountInfo:
    mount_point: str
    fstype: str
    source: str
    options: str

    def as_dict(self) -> dict[str, str]:
        return {
            "mount_point": self.mount_point,
            "fstype": self.fstype,
            "source": self.source,
            "options": self.options,
        }


def mount_info(path: Path, mounts_file: Path = Path("/proc/mounts")) -> MountInfo | None:
    """The mount that holds ``path`` (longest matching mount point), from /proc/mounts."""
    try:
        lines = mounts_file.read_text().splitlines()
    except OSError:
        return None
    target = str(path.resolve())
    best: MountInfo | None = None
    for line in lines:
        parts = line.split()
        if len(parts) < 4:
            continue
        source, point, fstype, options = parts[:4]
        point = point.replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) > len(best.mount_point)):
            best = MountInfo(point, fstype, source, options)
    return best
