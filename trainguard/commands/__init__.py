"""One module per ``trainguard`` subcommand."""
