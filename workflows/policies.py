"""Activity options the platform's workflows share.

PostgreSQL activities are short and retried until the database is back (a workflow must always
finish its work): one second, doubling, at most a minute apart, with no attempt limit.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

DATABASE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
)
