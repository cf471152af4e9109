"""The pure job model: values and their checks, no I/O (imports nothing above it).

The job document (`document`), statuses and constants, ids and small result types, errors,
clocks, limits, argument validation, `find_jobs` queries, cron and backoff arithmetic, rate
limits as values, the operations (`ops`) and the method events. Implementation: the public
names are exported by `jobcollection`.
"""
