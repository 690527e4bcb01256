"""The library under the commands: data, fresh captchas, the run engine, checkpoints, inference, metrics, files."""
