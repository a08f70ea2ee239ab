"""The read-only dashboard (``adapter-registry ui``; the ``ui`` extra: Starlette, uvicorn,
Jinja2).

One job per module: ``reading`` (the registry opened read-only: it never creates, migrates or
writes), ``views`` (what the overview, leaderboard and adapter pages show, as JSON-able data),
``lineage`` (an adapter's ancestry, bounded by depth and breadth), ``evolution`` (fitness
against generation and time), ``svg`` (the pictures, drawn on the server), ``app`` (the
Starlette routes: pages from ``templates/`` and the same data as JSON under ``/api``), and
``serving`` (the app on uvicorn in a thread, for the demo and the tests). Only ``reading`` and
the data modules import without the ``ui`` extra.
"""
