"""The desk: what technicians and their lead read (web page, metrics, the report with charts).

Every module here only reads the database, through `triage.store.desk` (where its SQL lives);
each takes a database path or values and returns what a command prints or serves.
"""
