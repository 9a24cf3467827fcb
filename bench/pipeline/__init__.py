"""The run pipeline: the plan (``suites``: a suite expands into jobs), execution (``executors``: local or
Ray, each job through ``jobs.run_job`` in a fresh process), the job's own process (``worker``: sets the
stack's environment, then calls the job's measure), and the checks before anything runs (``preflight``)."""
