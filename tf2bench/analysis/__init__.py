"""Reading saved runs: tables, verdicts, regressions. Never imports TensorFlow (a test checks it)."""
