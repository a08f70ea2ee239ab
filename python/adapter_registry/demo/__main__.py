"""``python -m adapter_registry.demo [options]``: the same as ``adapter-registry demo``."""

from . import main

main()
