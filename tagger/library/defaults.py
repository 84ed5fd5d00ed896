"""The scan's defaults that its command's options and help read, in a module without numpy (every
command's options are read when any command starts); `tagger.library.scan` uses them under the same
names."""

DEFAULT_FILE_TIMEOUT = 300.0
"""Seconds a worker may go without progress on one file (see ``scan(file_timeout=...)``)."""
