"""rs-capret training, data, evaluation and command-line tools (the `rscapret` command)."""
