"""Cap'n Proto RPC for the coordinator: the only package that imports capnp.

Deliberately empty: ``coordinator.serve`` / ``coordinator.connect`` are the public entry points,
and the command line imports ``coordinator.rpc._client`` without paying for Trio.
"""
