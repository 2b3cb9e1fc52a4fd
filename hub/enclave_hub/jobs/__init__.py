"""The job service: notebooks and scripts run in a sandbox of their project, apart from the
session that submitted them (`launcher.py`, one job's run; `dispatcher.py`, the queue's loop;
`api.py`, what sessions call; `cli.py`, `enclave job`). The book of jobs is `core.jobs`."""
