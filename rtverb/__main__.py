import sys

from rtverb.cli import main

sys.exit(main())
