"""The WAL archive: the commands Postgres runs to fill and read it, file names, and a gap check."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SEGMENT_RE = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")
WAL_NAME_RE = re.compile(r"^(?:[0-9A-F]{24}(?:\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history)(?:\.gz)?$")


def archive_command(archive_dir: str | Path) -> str:
    """postgresql.conf ``archive_command``: gzip each file into ``archive_dir`` atomically and durably.

    A file that is already archived with identical content counts as success (Postgres retries after
    a crash between copy and acknowledgement); different content fails, as the documentation asks.
    ``sync FILE`` makes the copy durable before the rename publishes it.
    """
    f = f"{archive_dir}/%f.gz"
    # umask 027: the backup service (postgres' group) must read the files and the drill replays them.
    return (
        f'umask 027; if [ -f "{f}" ]; then gzip -dc "{f}" | cmp -s - "%p"; '
        f'else gzip -1 -c "%p" > "{f}.tmp" && sync "{f}.tmp" && mv "{f}.tmp" "{f}"; fi'
    )


def restore_command(archive_dir: str | Path) -> str:
    """postgresql.conf ``restore_command`` matching :func:`archive_command` (plain copies accepted too)."""
    f = f"{archive_dir}/%f"
    return f'if [ -f "{f}.gz" ]; then gzip -dc "{f}.gz" > "%p"; else cp "{f}" "%p"; fi'


def segment_name(timeline: int, lsn: int, segment_bytes: int) -> str:
    """The WAL file name holding ``lsn`` (as pg_walfile_name does)."""
    segno = lsn // segment_bytes
    per_id = 0x1_0000_0000 // segment_bytes
    return f"{timeline:08X}{segno // per_id:08X}{segno % per_id:08X}"


def parse_lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def wal_files(archive_dir: Path) -> list[Path]:
    """Archived WAL files (segments, backup and timeline history), sorted by name."""
    if not archive_dir.is_dir():
        return []
    return sorted(p for p in archive_dir.iterdir() if p.is_file() and WAL_NAME_RE.match(p.name))


def bare_name(path: Path) -> str:
    return path.name[:-3] if path.name.endswith(".gz") else path.name


@dataclass(frozen=True)
class ContinuityReport:
    timeline: int
    first: str | None
    last: str | None
    missing: list[str]

    @property
    def ok(self) -> bool:
        return self.first is not None and not self.missing


def check_continuity(archive_dir: Path, start_segment: str, segment_bytes: int) -> ContinuityReport:
    """Every segment from ``start_segment`` to the newest one archived on its timeline is present."""
    match = SEGMENT_RE.match(start_segment)
    if not match:
        raise ValueError(f"{start_segment!r} is not a WAL segment name")
    timeline = int(match.group(1), 16)
    per_id = 0x1_0000_0000 // segment_bytes

    def number(name: str) -> int:
        m = SEGMENT_RE.match(name)
        assert m
        return int(m.group(2), 16) * per_id + int(m.group(3), 16)

    def name(n: int) -> str:
        return f"{timeline:08X}{n // per_id:08X}{n % per_id:08X}"

    start = number(start_segment)
    present = {
        number(bare_name(p))
        for p in wal_files(archive_dir)
        if SEGMENT_RE.match(bare_name(p)) and int(bare_name(p)[:8], 16) == timeline
    }
    present = {n for n in present if n >= start}
    if not present:
        return ContinuityReport(timeline, None, None, [start_segment])
    last = max(present)
    missing = [name(n) for n in range(start, last + 1) if n not in present]
    return ContinuityReport(timeline, name(start) if start in present else None, name(last), missing)
