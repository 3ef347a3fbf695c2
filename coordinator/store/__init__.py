"""Where the coordinator's state can live besides its local journal: etcd, shared by the
coordinators of several machines (``_etcd_store.py`` on the client ``_etcd.py``, the data layer
``_etcd_state.py`` and the membership lease ``_etcd_lease.py``; docs/DISTRIBUTED.md).

Public through ``coordinator``: ``open_coordinator(store=...)``, ``parse_store`` and the errors
(``_address.py``, which loads without the ``etcd`` extra).
"""
