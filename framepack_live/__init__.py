"""framepack-live: live, steerable FramePack video generation.

The code lives in the top-level folders `engine/`, `stream/`, `cluster/` and `bench/`; the
installer maps them under this one package name so they never claim generic import names.
"""

__version__ = "0.1.0"
