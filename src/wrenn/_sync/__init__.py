"""The blocking facade: one portal per client and generic adapters over the async API.

``portal`` runs coroutines, context managers and iterators in the client's event loop;
``adapt`` turns an async method into a sync one with the same signature; every other
module mirrors the async module of the same name.
"""
