import sys

from . import main

if __name__ == "__main__":  # worker processes spawned by the batch re-import this module
    sys.exit(main())
