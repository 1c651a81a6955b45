"""Production monitoring: the reference profile a model carries, drift checks of a batch against it, reports.

Submodules are imported explicitly (`aeops.scoring.profile`, `.drift`, `.monitor`, `.report`).
"""
