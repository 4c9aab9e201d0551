"""The lakehouse: table contracts and atomic file IO under the data root."""
