"""The embedded stack: a local PostgreSQL cluster, PostgREST and the workers.

``flows up`` / ``flows status`` / ``flows down`` drive it (see ``stack.py``);
the test suite reuses ``postgres.Cluster`` to run its own throwaway server.
"""
