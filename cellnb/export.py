"""``python -m cellnb.export --model DIR --out FILE.zip``: a bioimage.io model package.

See :mod:`cellnb.cli`.
"""

import sys

from cellnb.cli import export_main

if __name__ == "__main__":
    sys.exit(export_main())
