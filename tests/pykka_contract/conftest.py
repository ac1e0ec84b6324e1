"""Nothing here is a test module of ours: `run.py` runs Pykka's fetched tests with the
`pooled_runtime` plugin, in a pytest session of its own."""

collect_ignore = ["pooled_runtime.py", "run.py"]
