"""``python -m adapter_registry.cli`` is ``adapter-registry``."""

from . import main

if __name__ == "__main__":
    main()
