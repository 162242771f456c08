"""trainguard.io.files: reports written all or nothing, outputs that are inputs refused, streams read once."""
from __future__ import annotations

import os
import stat
import threading

import pytest

from trainguard.io import files
from trainguard.io.files import InputError, check_output_path, local_copy, write_text_atomic


def test_atomic_write_leaves_the_old_file_whole_when_the_write_fails(tmp_path, monkeypatch):
    # F7: a full disk mid-write used to leave a 4 KB partial page in place of the old report.
    report = tmp_path / "report.html"
    report.write_text("<html>old report</html>")
    real_fsync = os.fsync

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        write_text_atomic(report, "<html>" + "x" * 100_000 + "</html>")
    monkeypatch.setattr(files.os, "fsync", real_fsync)
    assert report.read_text() == "<html>old report</html>"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temporary file left behind


def test_atomic_write_keeps_permissions_and_writes_through_a_link(tmp_path):
    target = tmp_path / "real.html"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "link.html"
    link.symlink_to(target)
    write_text_atomic(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_output_path_that_is_an_input_is_refused_by_name_link_or_hard_link(tmp_path, monkeypatch):
    log = tmp_path / "log.csv"
    log.write_text("step,loss\n0,1\n")
    (tmp_path / "hard.html").hardlink_to(log)
    (tmp_path / "soft.html").symlink_to(log)
    monkeypatch.chdir(tmp_path)
    for output in ("log.csv", "./log.csv", str(log), "hard.html", "soft.html"):
        with pytest.raises(InputError, match="is one of the inputs"):
            check_output_path(output, ["log.csv"])
    with pytest.raises(InputError, match="is a directory"):
        check_output_path(tmp_path, ["log.csv"])
    check_output_path("report.html", ["log.csv"])  # a new file is fine


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_fifo_is_read_once_into_a_regular_file(tmp_path):
    fifo = tmp_path / "p.csv"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text("step,loss\n0,1.0\n1,0.5\n"))
    writer.start()
    with local_copy(fifo) as copy:
        assert copy.is_file() and copy.name == "p.csv"
        assert copy.read_text() == "step,loss\n0,1.0\n1,0.5\n"
        assert copy.read_text() == "step,loss\n0,1.0\n1,0.5\n"  # readable twice, unlike the pipe
    writer.join()
    assert not copy.exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_fifo_without_writer_is_given_up_on_not_waited_on_forever(tmp_path):
    # F8: `mkfifo p.csv; trainguard doctor p.csv` hung.
    fifo = tmp_path / "p.csv"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="sent nothing for 0.2 s"):
        with local_copy(fifo, wait_s=0.2):
            pass


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_endless_device_stops_at_the_cap():
    # F8: `trainguard report /dev/zero` grew to 9.4 GB.
    with pytest.raises(InputError, match="longer than 1 MiB"):
        with local_copy("/dev/zero", limit=1 << 20):
            pass


def test_regular_file_is_used_in_place(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("x")
    with local_copy(path) as copy:
        assert copy == path
