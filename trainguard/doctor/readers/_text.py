"""Reading a log file's bytes as text, with one-line errors for what cannot be read."""
from __future__ import annotations

from pathlib import Path

from trainguard.doctor.series import ReadError

__all__ = ["read_text"]

# Above this share of undecodable bytes the file is taken for binary, not a log with a few bad bytes.
_MAX_BAD_SHARE = 0.01


def read_text(path: Path, problems: list[str]) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ReadError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ReadError(f"{path}: is a directory") from None
    except OSError as e:
        raise ReadError(f"{path}: cannot read ({e.strerror or e})") from None
    if not data.strip():
        raise ReadError(f"{path}: empty file")
    if b"\x00" in data[:4096]:
        raise ReadError(f"{path}: binary data, not a text log")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("utf-8-sig", errors="replace")
    bad = text.count("\ufffd")
    if bad > _MAX_BAD_SHARE * len(text):
        raise ReadError(f"{path}: not UTF-8 text ({bad} undecodable bytes)")
    problems.append(f"{bad} byte(s) are not UTF-8; read as missing values")
    return text
