import sys

from meddata.cli import main

sys.exit(main())
