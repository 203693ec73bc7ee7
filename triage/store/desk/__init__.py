"""The desk's SQL: what the technicians' page, the metrics and the report read.

Every statement here only reads (the full-text index's triggers aside, which `fts.ensure`
installs through a migration); the desk (`triage.desk`) imports these and keeps its logic.
"""
