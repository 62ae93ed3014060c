"""``python -m cellnb.predict --model DIR --images DIR|GLOB --out DIR``: counts, labels, overlays.

See :mod:`cellnb.cli`.
"""

import sys

from cellnb.cli import predict_main

if __name__ == "__main__":
    sys.exit(predict_main())
