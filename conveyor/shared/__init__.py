"""Pure rules that more than one service applies: the workflow language's diagnostics and
limits, the run parameters' JSON Schema, artifact names and byte ranges.

No I/O, no grpc, no SQLAlchemy; it imports only the kernel and itself, so any service may
import it without reaching into another service.
"""
