"""`qcc`: the command for the whole job (import, run, quantize)."""
import sys


def main(argv=None) -> int:
    print("qcc: not yet implemented", file=sys.stderr)
    return 1
