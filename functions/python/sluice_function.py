"""Helper for Sluice functions in Python (runtime: exec). No dependencies.

    from sluice_function import handler, PermanentError, Result

    @handler
    def handle(req):            # req: {id, flow, run, attempt, deadline, event, payload, meta, object, body_path}
        return {"n": len(req["payload"]["text"])}     # the new payload (None keeps it)

Sluice starts the script as a worker and writes one JSON request per line on
its stdin; the helper answers each with one JSON line on stdout. Print logs
to stderr (print(..., file=sys.stderr)): stdout carries the answers. Raise
PermanentError for input that no retry can fix; any other exception is a
transient error (retried). Return Result(payload, meta) to set metadata too.
"""

import atexit
import json
import sys
import traceback

__all__ = ["handler", "serve", "PermanentError", "Result"]


class PermanentError(Exception):
    """An error retrying cannot fix: the run goes to the dead-letter topic."""


class Result:
    """A payload and metadata to return (meta: a dict of strings)."""

    def __init__(self, payload=None, meta=None):
        self.payload, self.meta = payload, meta


def answer(fn, req):
    """Runs fn on one request and returns the response (a dict)."""
    out = {"id": req.get("id")}
    if req.get("warmup"):
        return out
    try:
        res = fn(req)
    except PermanentError as e:
        out.update(error=str(e) or type(e).__name__, permanent=True)
        return out
    except Exception as e:  # noqa: BLE001 - every failure becomes an answer
        traceback.print_exc(file=sys.stderr)
        out["error"] = "%s: %s" % (type(e).__name__, e)
        return out
    if isinstance(res, Result):
        if res.payload is not None:
            out["payload"] = res.payload
        if res.meta:
            out["meta"] = res.meta
    elif res is not None:
        out["payload"] = res
    return out


def serve(fn, stdin=None, stdout=None):
    """Answers requests from stdin until it closes."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    for line in stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
        except ValueError as e:
            req, out = {}, {"error": "bad request: %s" % e, "permanent": True}
        else:
            out = answer(fn, req)
        stdout.write(json.dumps(out, separators=(",", ":")) + "\n")
        stdout.flush()


def handler(fn):
    """Decorator: when the script runs as the worker, serve fn once the
    script has been read to its end."""
    if getattr(sys.modules.get(fn.__module__), "__name__", "") == "__main__":
        atexit.register(serve, fn)
    return fn
