"""The saved format: a benchmark's record, and files written whole and never over an earlier run."""
