import sys

from masklab.cli import main

sys.exit(main())
