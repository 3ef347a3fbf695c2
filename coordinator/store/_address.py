"""Where a shared store is (``etcd://HOST:PORT[,HOST:PORT...]/WORKSPACE``) and the errors of
joining it: what the command line and the public API need without the ``etcd`` extra (httpx)
loaded."""

from __future__ import annotations

from dataclasses import dataclass

from .._errors import InvalidArgument, UnitsyncError

__all__ = ["StoreAddress", "StoreLost", "StoreUnreachable", "parse_store"]


class StoreUnreachable(UnitsyncError, ConnectionError):
    """``serve --store`` (or ``open_coordinator(store=...)``) could not reach the store at
    start (``serve`` exits 69)."""

    code = "unitsync.store-unreachable"

    def __init__(self, address: str, why: str) -> None:
        self.address = address
        self.why = why
        super().__init__(f"cannot reach the store {address} ({why})")


class StoreLost(UnitsyncError):
    """This coordinator's membership in the store ended (its lease expired or was revoked:
    the machine was cut off for longer than the lease's TTL). The units it held have been
    failed ``holder disconnected`` by the other coordinators; it stops (start it again)."""

    code = "unitsync.store-lost"

    def __init__(self, why: str) -> None:
        self.why = why
        super().__init__(f"this coordinator lost its membership in the store: {why}; the units "
                         "it held are failed by the other coordinators")


@dataclass(frozen=True, slots=True)
class StoreAddress:
    """``etcd://HOST:PORT[,HOST:PORT...]/WORKSPACE``: the endpoints and the workspace."""

    endpoints: tuple[str, ...]
    workspace: str

    def __str__(self) -> str:
        hosts = ",".join(e.removeprefix("http://") for e in self.endpoints)
        return f"etcd://{hosts}/{self.workspace}"


def parse_store(url: str) -> StoreAddress:
    """The address in ``url`` (:class:`InvalidArgument` saying the form if it is not one)."""
    form = "etcd://HOST:PORT[,HOST:PORT...]/WORKSPACE"
    if not url.startswith("etcd://"):
        raise InvalidArgument(f"a store is {form}, not {url!r}")
    hosts, _, workspace = url[len("etcd://"):].partition("/")
    endpoints = [h for h in hosts.split(",") if h]
    if not endpoints or any(":" not in h or not h.rpartition(":")[2].isdigit() for h in endpoints):
        raise InvalidArgument(f"a store is {form}: each endpoint with its port, not {url!r}")
    if not workspace or "/" in workspace:  # one path segment of the keys (Layout)
        raise InvalidArgument(
            f"a store is {form}: a workspace name without '/', not {workspace!r}")
    return StoreAddress(tuple(f"http://{h}" for h in endpoints), workspace)


