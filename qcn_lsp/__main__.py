import sys

from qcn_lsp.cli import main

sys.exit(main())
