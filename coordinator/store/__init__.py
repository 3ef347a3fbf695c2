"""Where the coordinator's state can live besides its local journal: the first brick is a
client for etcd (``_etcd.py``), which several coordinators will share a graph through.

Nothing is public yet: the store protocol and ``serve --store etcd://...`` come next (issue 15).
"""
