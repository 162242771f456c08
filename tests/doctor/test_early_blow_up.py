"""A log whose loss is non-finite from its first rows has no course for a rule to read: the doctor reports the
error and the causes of a blow-up as ``uncertain`` candidates, not an empty diagnosis."""
from __future__ import annotations

from trainguard.core.findings import Severity
from trainguard.doctor import diagnose_file


def test_an_epoch_log_that_is_nan_from_its_first_row_names_the_candidates(tmp_path):
    """Keras' CSVLogger after a float16 Adam run (keras-team/keras#11860): four epochs, every loss nan."""
    path = tmp_path / "training.csv"
    path.write_text("epoch,loss,val_loss\n" + "".join(f"{i},nan,NA\n" for i in range(4)), encoding="utf-8")
    result = diagnose_file(path)
    assert [f.code for f in result.findings if f.severity >= Severity.ERROR] == ["non_finite"]
    assert result.cause == "uncertain"
    assert "adam_epsilon" in {c["code"] for c in result.causes[0].evidence["candidates"]}
