"""Running a suite: options, the case plan, presets, the one run sequence, calibration, worker processes."""
