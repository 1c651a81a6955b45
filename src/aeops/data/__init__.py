"""Data stage: load raw sources (`sources`), split/scale/write them (`prepare`), read them back (`prepared`).

Import the submodules directly; this package imports nothing heavy.
"""
