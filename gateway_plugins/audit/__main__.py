import sys

from gateway_plugins.audit.cli import main

sys.exit(main(sys.argv[1:]))
