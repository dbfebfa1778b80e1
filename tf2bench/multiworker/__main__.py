"""``python -m tf2bench.multiworker launch|worker ...``: see tf2bench.multiworker.launch."""

import sys

from tf2bench.multiworker.launch import main

sys.exit(main())
