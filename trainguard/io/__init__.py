"""Reading and writing trainguard's run log."""
