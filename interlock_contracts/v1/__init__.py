"""Generated protobuf/gRPC code for the interlock.v1 contracts (do not edit; see scripts/gen_proto.py)."""
