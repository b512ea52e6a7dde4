"""Regenerate the Python modules of every protobuf schema under qcc/ (`*_pb2.py`
next to each `*.proto`), with protobuf's compiler from grpcio-tools:

    pip install grpcio-tools && python tools/gen_protos.py

The generated modules are checked in; their protobuf runtime lower bound in
pyproject.toml must match the compiler's version (the header of each module).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    try:
        from grpc_tools import protoc
    except ImportError:
        print("gen_protos: needs grpcio-tools (pip install grpcio-tools)", file=sys.stderr)
        return 1
    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted(ROOT.glob("qcc/**/*.proto"))
    for proto in protos:
        rel = proto.relative_to(ROOT)
        args = ["protoc", f"-I{proto.parent}", f"-I{include}",
                f"--python_out={proto.parent}", f"--pyi_out={proto.parent}", str(proto)]
        if protoc.main(args) != 0:
            print(f"gen_protos: protoc failed on {rel}", file=sys.stderr)
            return 1
        print(f"generated {rel.with_name(proto.stem + '_pb2.py')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
