"""Command-line pieces the scripts in tools/ share (not part of the library)."""
