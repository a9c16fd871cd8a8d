"""The live tour: each claim of the seeds shown between real processes and checked.

``stop.py`` defines a stop and its handle, ``proc.py`` the forked processes
that record what they do, ``runner.py`` runs stops with deadlines,
``render.py`` prints them, and ``stops/`` holds the stops themselves.
"""
