"""The Dask cluster the reductions run on: a LocalCluster, an existing scheduler, or SLURM jobs.

Settings are the ``dask`` section of the config (src/coemu/config.schema.yaml, which holds
the defaults of what a caller leaves out):
``scheduler_address`` wins when set; otherwise ``cluster: local`` starts a
``distributed.LocalCluster`` (``workers`` processes x ``threads_per_worker``,
``memory_limit`` each) and ``cluster: slurm`` a ``dask_jobqueue.SLURMCluster``
with ``slurm.jobs`` jobs of the given size.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)


@contextlib.contextmanager
def dask_client(settings: dict[str, Any] | None = None) -> Iterator[Any]:
    """A connected ``distributed.Client``; the cluster it started (if any) is closed on exit.

    The dashboard address goes to the log.
    """
    from distributed import Client, LocalCluster

    from coemu.settings import section

    s = section("dask", settings)
    cluster = None
    if s["scheduler_address"]:
        client = Client(s["scheduler_address"])
    elif s["cluster"] == "slurm":
        from dask_jobqueue import SLURMCluster

        slurm = dict(s["slurm"])
        jobs = int(slurm.pop("jobs", 1))
        cluster = SLURMCluster(**slurm)
        cluster.scale(jobs=jobs)
        client = Client(cluster)
    else:  # local (the schema allows no other)
        cluster = LocalCluster(
            n_workers=s["workers"],
            threads_per_worker=s["threads_per_worker"],
            memory_limit=s["memory_limit"],
            dashboard_address=s["dashboard_address"],
        )
        client = Client(cluster)
    log.info("dask: %d workers, dashboard %s", len(client.scheduler_info()["workers"]), client.dashboard_link)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
