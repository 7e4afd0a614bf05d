import sys

from fusegen.bench.cli import run

sys.exit(run())
