import sys

from vrm.cli import main

sys.exit(main())
