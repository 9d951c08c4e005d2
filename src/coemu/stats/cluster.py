"""The Dask cluster the reductions run on: a LocalCluster, an existing scheduler, or SLURM jobs.

Settings are the ``dask`` section of the config (src/coemu/config.schema.yaml, which holds
the defaults of what a caller leaves out):
``scheduler_address`` wins when set; otherwise ``cluster: local`` starts a
``distributed.LocalCluster`` (``workers`` processes x ``threads_per_worker``,
``memory_limit`` each) and ``cluster: slurm`` a ``dask_jobqueue.SLURMCluster``
with ``slurm.jobs`` jobs of the given size.

A Dask scheduler runs the functions it is sent, so one that anybody on the
network can reach runs their code as the pipeline's user. ``security: auto``
(the default) gives a cluster the job starts TLS with temporary self-signed
credentials (``distributed.security.Security.temporary()``): the scheduler,
the workers and this client hold them, and a client without them is refused.
The SLURM workers read theirs from files that dask-jobqueue writes (mode 0600)
into ``slurm.shared_temp_directory`` (default: the job's working directory,
which the worker jobs must see). ``security`` given as PEM files (``ca_file``,
``cert``, ``key``) authenticates to a running ``scheduler_address`` or is
used for the started cluster; ``none`` is plain TCP. Dashboards bind to
``dashboard_address`` (default ``127.0.0.1:0``: this host only).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)


def cluster_security(settings: dict[str, Any], started: bool):
    """The ``distributed.security.Security`` of the ``dask`` settings (None: plain TCP).

    Args:
        started: for a cluster the job starts (``auto`` -> temporary credentials), or for a
            running ``scheduler_address`` (``auto`` -> none).
    """
    from distributed.security import Security

    spec = settings["security"]
    if spec == "none" or (spec == "auto" and not started):
        return None
    if spec == "auto":
        return Security.temporary()
    return Security(
        tls_ca_file=spec["ca_file"],
        tls_client_cert=spec["cert"],
        tls_client_key=spec["key"],
        tls_scheduler_cert=spec["cert"],
        tls_scheduler_key=spec["key"],
        tls_worker_cert=spec["cert"],
        tls_worker_key=spec["key"],
        require_encryption=True,
    )


@contextlib.contextmanager
def dask_client(settings: dict[str, Any] | None = None) -> Iterator[Any]:
    """A connected ``distributed.Client``; the cluster it started (if any) is closed on exit.

    The scheduler's address and the dashboard's go to the log.
    """
    from distributed import Client, LocalCluster

    from coemu.settings import section

    s = section("dask", settings)
    cluster = None
    if s["scheduler_address"]:
        client = Client(s["scheduler_address"], security=cluster_security(s, started=False))
    elif s["cluster"] == "slurm":
        from dask_jobqueue import SLURMCluster

        slurm = dict(s["slurm"])
        jobs = int(slurm.pop("jobs", 1))
        security = cluster_security(s, started=True)
        if security is not None:
            slurm.setdefault("shared_temp_directory", os.getcwd())
        options = dict(slurm.pop("scheduler_options", {}))
        options.setdefault("dashboard_address", s["dashboard_address"])
        cluster = SLURMCluster(security=security, scheduler_options=options, **slurm)
        cluster.scale(jobs=jobs)
        client = Client(cluster, security=security)
    else:  # local (the schema allows no other)
        security = cluster_security(s, started=True)
        cluster = LocalCluster(
            n_workers=s["workers"],
            threads_per_worker=s["threads_per_worker"],
            memory_limit=s["memory_limit"],
            dashboard_address=s["dashboard_address"],
            host="127.0.0.1",
            protocol="tls://" if security is not None else "tcp://",
            security=security,
        )
        client = Client(cluster, security=security)
    log.info(
        "dask: %d workers, scheduler %s, dashboard %s",
        len(client.scheduler_info()["workers"]),
        client.scheduler.address,
        client.dashboard_link,
    )
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
